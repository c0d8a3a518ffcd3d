"""The self-contained HTML report of `dreamvid eval` (and the combined page of `dreamvid compare`).

Plots (matplotlib, no pyplot state) and frame strips are embedded as base64 PNG; the page has no script
and loads nothing from the network.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import DreamvidError

REFERENCES = ("replay", "shuffled", "frozen", "blurred", "texture")

# Headline numbers: (key, label, one-line explanation). The calibration table and `compare` show these.
HEADLINE = [
    ("realism.ratio", "realism (patch NN ratio)",
     "mean distance of dream patches to their nearest training patch, over the same for held-out frames; 1 = as realistic as unseen footage, lower = closer to the training frames"),
    ("copying.copy_share", "copy share",
     "share of dream frames closer to some training frame than consecutive training frames typically are to each other"),
    ("copying.longest_run_s", "longest replay run (s)",
     "longest stretch of the dream that replays consecutive training frames, in seconds"),
    ("copying.novelty", "novelty",
     "median distance from a dream frame to its nearest training frame, in units of the copy threshold; below 1 = copies"),
    ("coverage.visited_share", "coverage (clusters visited)",
     "share of the k-means clusters of the training frames that at least one dream frame falls in"),
    ("coverage.js_divergence", "coverage JS divergence",
     "Jensen-Shannon divergence (bits) between the dream's and the source's cluster-visit histograms; 0 = same mix"),
    ("motion.diff_ratio", "motion (frame diff ratio)",
     "mean absolute consecutive-frame difference, dream over source; 1 = as much change per frame as the source"),
    ("motion.diff_wasserstein_rel", "frame diff distribution distance",
     "Wasserstein distance between the dream's and source's consecutive-difference distributions, over the source mean"),
    ("motion.flow_ratio", "optical flow ratio",
     "mean Farneback optical-flow magnitude, dream over source; 1 = objects move as far per frame as in the source"),
    ("motion.flow_wasserstein_rel", "flow distribution distance",
     "Wasserstein distance between the dream's and source's flow-magnitude distributions, over the source mean"),
    ("motion.frozen_share", "frozen share",
     "share of consecutive dream frames that are practically identical (mean difference < 0.5 grey levels)"),
    ("motion.flicker_ratio", "flicker ratio",
     "frame-to-frame brightness jitter (second difference of mean brightness), dream over source"),
    ("sharpness.ratio", "sharpness ratio",
     "variance of the Laplacian (fine detail), dream over source; below 1 = blurrier"),
    ("drift.max_ratio", "drift (worst window spread)",
     "how much more a windowed metric varies across the dream's windows than across the source's own windows"),
    ("diversity.normalized", "diversity",
     "pixel std across dreams started from one seed frame (last quarter of the horizon), over the source's pixel std"),
]

MODEL_EXPLAIN = {
    "reconstruction.psnr": "PSNR (dB) of the VAE's reconstructions of held-out frames; higher = the look is captured",
    "reconstruction.ssim": "SSIM of those reconstructions (1 = identical structure)",
    "reconstruction.sharpness_ratio": "their Laplacian variance over the frames' own: the ceiling on the "
                                      "dream's sharpness, since the same decoder draws every dreamed frame",
    "reconstruction.realism_ratio": "their patch distance to the training frames over held-out frames' own: "
                                    "what the dream's realism ratio would be if the RNN's latents were right",
    "prediction.nll": "negative log-likelihood of the true next latent under the RNN's predicted distribution (nats, summed over latent dims); lower is better",
    "prediction.mse": "mean squared error between the RNN's point prediction and the true latent (per latent dim)",
    "prediction.psnr": "PSNR (dB) of the decoded prediction against the true held-out frame",
}

EXPLAIN = {key: text for key, _, text in HEADLINE}
EXPLAIN.update({
    "realism.patch_distance": "mean RMS distance (grey levels) from sampled dream patches to their nearest training patch",
    "realism.heldout_patch_distance": "the same for sampled held-out frames: the level of unseen real footage",
    "copying.threshold": "copy threshold: median RMS distance between consecutive training frames (16x16 thumbnails, grey levels)",
    "copying.nn_distance_median": "median RMS distance from a dream frame to its nearest training frame (16x16 thumbnails)",
    "copying.longest_run_frames": "longest replay run in frames",
    "copying.long_run_share": "share of dream frames inside replay runs at least one second long",
    "coverage.clusters": "number of k-means clusters fitted to the training frames",
    "motion.diff_mean": "mean absolute consecutive-frame difference of the dream (grey levels)",
    "motion.source_diff_mean": "the same for the source",
    "motion.diff_wasserstein": "Wasserstein distance between the difference distributions (grey levels)",
    "motion.flow_mean": "mean Farneback flow magnitude of the dream (px/frame)",
    "motion.source_flow_mean": "the same for the source",
    "motion.flow_wasserstein": "Wasserstein distance between the flow distributions (px/frame)",
    "motion.source_frozen_share": "frozen share of the source itself",
    "motion.flicker": "mean |second difference| of the dream's per-frame mean brightness (grey levels)",
    "motion.source_flicker": "the same for the source",
    "sharpness.laplacian_var": "mean variance of the Laplacian of the dream's grey frames",
    "sharpness.source_laplacian_var": "the same for the source",
    "drift.window_frames": "frames per window",
    "drift.windows": "windows in the dream",
    "drift.source_windows": "windows in the source",
    "drift.motion_ratio": "std of per-window motion across dream windows over that across source windows",
    "drift.sharpness_ratio": "the same for sharpness",
    "drift.brightness_ratio": "the same for mean brightness",
    "drift.cluster_js_ratio": "the same for the JS divergence of each window's cluster visits from the source's",
    "drift.worst": "the windowed metric with the largest ratio",
    "diversity.dreams": "number of dreams started from the same seed frame",
    "diversity.horizon": "frames per such dream",
    "diversity.source_pixel_std": "pixel std across source frames (grey levels), the normaliser",
    "length.frames": "frames in the dream",
    "length.seconds": "its length in seconds",
})


def format_value(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float) or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def _get(metrics: dict, key: str):
    group, _, name = key.partition(".")
    g = metrics.get(group)
    return g.get(name) if isinstance(g, dict) else None


# ---------------------------------------------------------------------------------------------- images


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def strip_png(frames: np.ndarray, gap: int = 2) -> bytes:
    """Frames side by side (white gaps) as PNG bytes."""
    frames = np.asarray(frames)
    n, h, w = frames.shape[:3]
    canvas = np.full((h, n * w + (n - 1) * gap, 3), 255, np.uint8)
    for i, f in enumerate(frames):
        canvas[:, i * (w + gap):i * (w + gap) + w] = f
    ok, buf = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        raise DreamvidError("could not encode a frame strip as PNG")
    return buf.tobytes()


def _figure(width=6.0, height=3.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _hist_plot(entry: dict, title: str, xlabel: str) -> bytes:
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


def _clusters_plot(entry: dict) -> bytes:
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


def _drift_plot(entry: dict, fps: float) -> bytes:
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


def _diversity_plot(curve: list, fps: float) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(np.arange(len(curve)) / fps, curve, color="tab:orange")
    ax.axhline(1.0, color="tab:blue", ls="--", label="source's own variety")
    ax.set_title("diversity across dreams from one seed frame")
    ax.set_xlabel("time since the seed frame (s)")
    ax.set_ylabel("pixel std / source's")
    ax.legend()
    return _fig_png(fig)


def _prediction_plot(pred: dict) -> bytes | None:
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


# ---------------------------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}
td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right;vertical-align:top}
td.l,th.l{text-align:left} td.why{text-align:left;color:#555;max-width:420px}
td.flag{background:#fdd;font-weight:bold} td.rflag{background:#fee}
.flags{background:#fff4f4;border:1px solid #e99;padding:8px 12px} .ok{background:#f4fff4;border:1px solid #9c9;padding:8px 12px}
img.strip{image-rendering:pixelated;height:128px;display:block;margin:2px 0 10px}
img.plot{max-width:100%;display:block;margin:4px 0 12px}
.small{color:#666;font-size:12px}
"""


def _e(text) -> str:
    return html.escape(str(text))


def _img(png: bytes, cls: str, alt: str) -> str:
    return f'<img class="{cls}" alt="{_e(alt)}" src="{png_data_uri(png)}">'


def _range_text(rng) -> str:
    if not rng:
        return ""
    low, high = rng
    if low is not None and high is not None:
        return f"{format_value('', low)} .. {format_value('', high)}"
    if low is not None:
        return f"&ge; {format_value('', low)}"
    if high is not None:
        return f"&le; {format_value('', high)}"
    return ""


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise DreamvidError(f"cannot write {path} ({error.strerror or error})", "choose another -o") from None


def write_report(report: dict, path, *, strips: dict | None = None) -> Path:
    """Write the report dict (from `evaluation.evaluate`/`report_from_frames`) as one self-contained HTML file."""
    path = Path(path)
    meta, metrics = report.get("meta", {}), report.get("metrics", {})
    ranges, flags = report.get("ranges", {}), report.get("flags", [])
    cal = report.get("calibration", {})
    series = report.get("series", {})
    fps = float(meta.get("fps") or 25)
    body = ["<h1>dreamvid evaluation</h1>"]
    facts = [("run", meta.get("run_dir")), ("dream", meta.get("dream")), ("dream frames", meta.get("dream_frames")),
             ("training frames", meta.get("train_frames")), ("held-out frames", meta.get("heldout_frames")),
             ("frame size", f"{meta.get('size')} px"), ("fps", format_value("", meta.get("fps"))),
             ("seed", meta.get("seed")),
             ("evaluation time", f"{report.get('timings', {}).get('total_s', 0):.1f} s")]
    body.append("<table>" + "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                                    for k, v in facts if v is not None) + "</table>")

    flagged = {f["metric"] for f in flags}
    if flags:
        items = "".join(f"<li><b>{_e(f['metric'])}</b> = {format_value('', f['value'])} "
                        f"(reference range {_range_text(f['range'])})</li>" for f in flags)
        body.append(f'<div class="flags"><b>{len(flags)} number(s) off their reference range</b><ul>{items}</ul>'
                    "No single number decides: read them together.</div>")
    elif ranges:
        body.append('<div class="ok">Every headline number is inside its reference range.</div>')

    # Headline + calibration table.
    names = [n for n in REFERENCES if n in cal]
    body.append("<h2>Headline numbers and calibration</h2>")
    body.append('<p class="small">Each reference dream is built from the source and scored by the same code: '
                "<b>replay</b> the source itself, <b>shuffled</b> its frames in random order, <b>frozen</b> one "
                "frame repeated, <b>blurred</b> a blurred replay, <b>texture</b> a video texture jumping between "
                "similar frames. The reference range of a number lies halfway between a good anchor and the "
                "reference showing the defect (docs/metrics.md). Red: off range.</p>")
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = []
    for key, label, why in HEADLINE:
        value = _get(metrics, key)
        if value is None and not any(_get(cal[n]["metrics"], key) is not None for n in names):
            continue
        cls = ' class="flag"' if key in flagged else ""
        cells = []
        for n in names:
            rf = {f["metric"] for f in cal[n].get("flags", [])}
            c = ' class="rflag"' if key in rf else ""
            cells.append(f"<td{c}>{format_value(key, _get(cal[n]['metrics'], key))}</td>")
        rows.append(f'<tr><td class="l">{_e(label)}</td><td{cls}>{format_value(key, value)}</td>'
                    f"<td>{_range_text(ranges.get(key))}</td>{''.join(cells)}<td class=\"why\">{_e(why)}</td></tr>")
    body.append(f'<table><tr><th class="l">metric</th><th>dream</th><th>reference range</th>{head}'
                f'<th class="l">what it means</th></tr>{"".join(rows)}</table>')

    # Model numbers.
    rec, pred = metrics.get("reconstruction"), metrics.get("prediction")
    if rec or pred:
        body.append("<h2>The model on held-out footage</h2>")
    if rec:
        body.append('<table><tr><th class="l">reconstruction</th><th>value</th><th class="l">what it means</th></tr>')
        for k in ("psnr", "ssim", "sharpness_ratio", "realism_ratio"):
            if k not in rec:  # reports written before these ratios existed
                continue
            body.append(f'<tr><td class="l">{k.upper().replace("_", " ")}</td><td>{format_value(k, rec.get(k))}</td>'
                        f'<td class="why">{_e(MODEL_EXPLAIN["reconstruction." + k])}</td></tr>')
        body.append("</table>")
    if pred:
        steps = [("teacher-forced (1 step)", pred.get("teacher_forced"))]
        steps += [(f"open loop, k = {k}", v) for k, v in (pred.get("open_loop") or {}).items()]
        body.append('<table><tr><th class="l">prediction</th><th>NLL</th><th>MSE</th><th>PSNR (dB)</th></tr>')
        for label, entry in steps:
            cells = "".join(f"<td>{format_value(k, entry.get(k) if entry else None)}</td>"
                            for k in ("nll", "mse", "psnr"))
            body.append(f'<tr><td class="l">{_e(label)}</td>{cells}</tr>')
        body.append("</table><ul class=\"small\">" + "".join(
            f"<li><b>{k.upper()}</b>: {_e(MODEL_EXPLAIN['prediction.' + k])}</li>" for k in ("nll", "mse", "psnr"))
            + f"<li>Open loop: after {_e(pred.get('context'))} true latents the RNN is fed its own point "
            "predictions; k = steps ahead. '-': held-out sequences too short for that k.</li></ul>")
        png = _prediction_plot(pred)
        if png:
            body.append(_img(png, "plot", "prediction PSNR against steps ahead"))

    # Frame strips.
    if strips:
        body.append("<h2>Frames</h2>")
        for label, frames in strips.items():
            if frames is None or len(frames) == 0:
                continue
            body.append(f"<div>{_e(label)}</div>" + _img(strip_png(frames), "strip", label))

    # Plots.
    body.append("<h2>Distributions and curves</h2>")
    if "diff" in series:
        body.append(_img(_hist_plot(series["diff"], "consecutive-frame difference", "mean |difference| (grey levels)"),
                         "plot", "frame difference histogram"))
    if "flow" in series:
        body.append(_img(_hist_plot(series["flow"], "optical flow magnitude (Farneback)", "px per frame"),
                         "plot", "flow histogram"))
    if "nn_distance" in series:
        body.append(_img(_hist_plot(series["nn_distance"], "distance to the nearest training frame",
                                    "RMS distance, 16x16 thumbnails (grey levels)"), "plot", "nearest frame histogram"))
    if "clusters" in series:
        body.append(_img(_clusters_plot(series["clusters"]), "plot", "cluster visits"))
    if series.get("drift", {}).get("dream"):
        body.append("<h3>Long-horizon drift</h3>"
                    '<p class="small">Each point is one window of '
                    f"{series['drift']['window_frames']} frames; the source's own windows show how much it varies by itself.</p>")
        body.append(_img(_drift_plot(series["drift"], fps), "plot", "drift curves"))
    if series.get("diversity"):
        body.append(_img(_diversity_plot(series["diversity"], fps), "plot", "diversity curve"))

    # Every number.
    body.append("<h2>Every number</h2><details><summary>show</summary><table>"
                '<tr><th class="l">number</th><th>dream</th><th class="l">what it means</th></tr>')
    for group, values in metrics.items():
        if group in ("reconstruction", "prediction") or not isinstance(values, dict):
            continue
        for name, value in values.items():
            key = f"{group}.{name}"
            body.append(f'<tr><td class="l">{_e(key)}</td><td>{_e(format_value(key, value))}</td>'
                        f'<td class="why">{_e(EXPLAIN.get(key, ""))}</td></tr>')
    body.append("</table></details>")
    timings = report.get("timings", {})
    if timings:
        body.append('<p class="small">Timings: ' + ", ".join(f"{_e(k)} {v:.1f}" for k, v in timings.items()
                                                           if isinstance(v, (int, float))) + "</p>")
    _atomic_write(path, _page("dreamvid evaluation", body))
    return path


def write_compare_html(path: Path, reports: list[tuple[str, dict]]) -> Path:
    """One page with the headline numbers of several reports side by side, and each one's calibration."""
    body = ["<h1>dreamvid compare</h1>"]
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in reports)
    rows = []
    for key, label, why in HEADLINE:
        cells = []
        for _, report in reports:
            flagged = any(f["metric"] == key for f in report.get("flags", []))
            value = _get(report.get("metrics", {}), key)
            cls = ' class="flag"' if flagged else ""
            cells.append(f"<td{cls}>{format_value(key, value)}</td>")
        rows.append(f'<tr><td class="l">{_e(label)}</td>{"".join(cells)}<td class="why">{_e(why)}</td></tr>')
    for key, label in (("reconstruction.psnr", "reconstruction PSNR"), ("reconstruction.ssim", "reconstruction SSIM")):
        cells = "".join(f"<td>{format_value(key, _get(r.get('metrics', {}), key))}</td>" for _, r in reports)
        rows.append(f'<tr><td class="l">{label}</td>{cells}<td class="why">{_e(MODEL_EXPLAIN[key])}</td></tr>')
    body.append(f'<table><tr><th class="l">metric</th>{head}<th class="l">what it means</th></tr>{"".join(rows)}</table>')
    body.append('<p class="small">Red: outside the reference range calibrated on that run\'s own source.</p>')
    for name, report in reports:
        meta = report.get("meta", {})
        body.append(f"<h2>{_e(name)}</h2><p class='small'>{_e(meta.get('run_dir', ''))} &middot; "
                    f"{_e(meta.get('dream', ''))} &middot; {_e(meta.get('dream_frames', ''))} frames</p>")
        cal = report.get("calibration", {})
        names = [n for n in REFERENCES if n in cal]
        if names:
            head2 = "".join(f"<th>{_e(n)}</th>" for n in names)
            crow = []
            for key, label, _ in HEADLINE:
                cells = "".join(f"<td>{format_value(key, _get(cal[n]['metrics'], key))}</td>" for n in names)
                crow.append(f'<tr><td class="l">{_e(label)}</td><td>{format_value(key, _get(report["metrics"], key))}</td>'
                            f"<td>{_range_text(report.get('ranges', {}).get(key))}</td>{cells}</tr>")
            body.append(f'<table><tr><th class="l">metric</th><th>dream</th><th>range</th>{head2}</tr>{"".join(crow)}</table>')
    path.parent.mkdir(parents=True, exist_ok=True) if not path.parent.exists() else None
    _atomic_write(path, _page("dreamvid compare", body))
    return path
