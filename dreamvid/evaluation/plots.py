"""The plots of the eval report, as PNG bytes: matplotlib figures without pyplot state (nothing global, no display)."""
from __future__ import annotations

import io
import math

import numpy as np


def _figure(width: float = 6.0, height: float = 3.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _axes():
    fig = _figure()
    return fig, fig.add_subplot()


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _finish(fig, ax, title: str, xlabel: str, ylabel: str) -> bytes:
    """Title, axis labels and legend of a one-plot figure, then its PNG."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _fig_png(fig)


def hist_plot(entry: dict, title: str, xlabel: str) -> bytes:
    fig, ax = _axes()
    edges = np.array(entry["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    if "source" in entry:
        ax.bar(centers, entry["source"], width=width, alpha=0.5, label="source", color="tab:blue")
    ax.bar(centers, entry["dream"], width=width, alpha=0.5, label="dream", color="tab:orange")
    if entry.get("threshold") is not None:
        ax.axvline(entry["threshold"], color="k", ls="--", label="copy threshold")
    return _finish(fig, ax, title, xlabel, "share")


def clusters_plot(entry: dict) -> bytes:
    fig, ax = _axes()
    x = np.arange(len(entry["source"]))
    ax.bar(x - 0.2, entry["source"], width=0.4, label="source")
    ax.bar(x + 0.2, entry["dream"], width=0.4, label="dream")
    return _finish(fig, ax, "cluster visits (k-means of training frames)", "cluster", "share of frames")


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
    fig, ax = _axes()
    ax.plot(np.arange(len(curve)) / fps, curve, color="tab:orange")
    ax.axhline(1.0, color="tab:blue", ls="--", label="source's own variety")
    return _finish(fig, ax, "diversity across dreams from one seed frame", "time since the seed frame (s)",
                   "pixel std / source's")


def prediction_plot(pred: dict) -> bytes | None:
    ks = [k for k, v in pred.get("open_loop", {}).items() if v and v.get("psnr") is not None]
    if not ks:
        return None
    fig, ax = _axes()
    ax.plot([int(k) for k in ks], [pred["open_loop"][k]["psnr"] for k in ks], "o-", label="open loop")
    tf = pred.get("teacher_forced", {}).get("psnr")
    if tf is not None:
        ax.axhline(tf, color="k", ls="--", label="teacher-forced (1 step)")
    ax.set_xscale("log", base=2)
    return _finish(fig, ax, "prediction on held-out sequences", "steps ahead k", "decoded PSNR (dB)")
