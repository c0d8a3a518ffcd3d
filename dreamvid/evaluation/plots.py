"""The plots of the eval report, as PNG bytes: matplotlib figures without pyplot state (nothing global, no display)."""
from __future__ import annotations

import io
import math

import numpy as np


def _figure(width=6.0, height=3.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def hist_plot(entry: dict, title: str, xlabel: str) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    edges = np.array(entry["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    if "source" in entry:
        ax.bar(centers, entry["source"], width=width, alpha=0.5, label="source", color="tab:blue")
    ax.bar(centers, entry["dream"], width=width, alpha=0.5, label="dream", color="tab:orange")
    if entry.get("threshold") is not None:
        ax.axvline(entry["threshold"], color="k", ls="--", label="copy threshold")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share")
    ax.legend()
    return _fig_png(fig)


def clusters_plot(entry: dict) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    k = len(entry["source"])
    x = np.arange(k)
    ax.bar(x - 0.2, entry["source"], width=0.4, label="source")
    ax.bar(x + 0.2, entry["dream"], width=0.4, label="dream")
    ax.set_title("cluster visits (k-means of training frames)")
    ax.set_xlabel("cluster")
    ax.set_ylabel("share of frames")
    ax.legend()
    return _fig_png(fig)


def drift_plot(entry: dict, fps: float) -> bytes:
    dream, source = entry["dream"], entry["source"]
    w = entry["window_frames"]
    names = list(dream)
    cols = 3
    rows = math.ceil(len(names) / cols)
    fig = _figure(10, 2.6 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        d = [np.nan if v is None else v for v in dream[name]]
        t = (np.arange(len(d)) + 0.5) * w / fps
        ax.plot(t, d, "o-", ms=3, label="dream", color="tab:orange")
        if name in source:
            s = [np.nan if v is None else v for v in source[name]]
            ts = (np.arange(len(s)) + 0.5) * w / fps
            ax.plot(ts, s, "s-", ms=3, label="source", color="tab:blue")
        elif name == "realism":
            ax.axhline(1.0, color="tab:blue", ls="--", label="held-out")
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    return _fig_png(fig)


def diversity_plot(curve: list, fps: float) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(np.arange(len(curve)) / fps, curve, color="tab:orange")
    ax.axhline(1.0, color="tab:blue", ls="--", label="source's own variety")
    ax.set_title("diversity across dreams from one seed frame")
    ax.set_xlabel("time since the seed frame (s)")
    ax.set_ylabel("pixel std / source's")
    ax.legend()
    return _fig_png(fig)


def prediction_plot(pred: dict) -> bytes | None:
    ks = [k for k, v in pred.get("open_loop", {}).items() if v and v.get("psnr") is not None]
    if not ks:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([int(k) for k in ks], [pred["open_loop"][k]["psnr"] for k in ks], "o-", label="open loop")
    tf = pred.get("teacher_forced", {}).get("psnr")
    if tf is not None:
        ax.axhline(tf, color="k", ls="--", label="teacher-forced (1 step)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("steps ahead k")
    ax.set_ylabel("decoded PSNR (dB)")
    ax.set_title("prediction on held-out sequences")
    ax.legend()
    return _fig_png(fig)
