"""The self-contained HTML report of `dreamvid eval` (and the combined page of `dreamvid compare`).

Plots (plots.py) and frame strips are embedded as base64 PNG; the page has no script and loads nothing from the
network. HEADLINE names the headline numbers the report, its calibration table and `compare` show.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import cv2
import numpy as np

from ..errors import DreamvidError
from ..files import atomic_write_text
from . import plots
from .metrics import REFERENCE_DREAMS, REFERENCE_NAMES
from .scoring import get

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
    if isinstance(value, (str, int)):  # bool included
        return str(value)
    if not isinstance(value, float) or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


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


def flagged(scored: dict) -> set[str]:
    """The keys flagged in a report (or in one calibration entry)."""
    return {f["metric"] for f in scored.get("flags", [])}


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _write_page(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as error:
        raise DreamvidError(f"cannot write {path} ({error.strerror or error})", "choose another -o") from None


# ---------------------------------------------------------------------------------------------- the report


def write_report(report: dict, path, *, strips: dict | None = None) -> Path:
    """Write the report dict (from `evaluate`/`report_from_frames`) as one self-contained HTML file."""
    path = Path(path)
    metrics = report.get("metrics", {})
    fps = float(report.get("meta", {}).get("fps") or 25)
    body = ["<h1>dreamvid evaluation</h1>", _facts(report), *_flags_box(report), *_headline_section(report),
            *_model_section(metrics), *_strips_section(strips), *_plots_section(report.get("series", {}), fps),
            *_every_number(metrics), *_timings_line(report)]
    _write_page(path, _page("dreamvid evaluation", body))
    return path


def _facts(report: dict) -> str:
    meta = report.get("meta", {})
    facts = [("run", meta.get("run_dir")), ("dream", meta.get("dream")), ("dream frames", meta.get("dream_frames")),
             ("training frames", meta.get("train_frames")), ("held-out frames", meta.get("heldout_frames")),
             ("frame size", f"{meta.get('size')} px"), ("fps", format_value("", meta.get("fps"))),
             ("seed", meta.get("seed")),
             ("evaluation time", f"{report.get('timings', {}).get('total_s', 0):.1f} s")]
    return "<table>" + "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                               for k, v in facts if v is not None) + "</table>"


def _flags_box(report: dict) -> list[str]:
    flags = report.get("flags", [])
    if flags:
        items = "".join(f"<li><b>{_e(f['metric'])}</b> = {format_value('', f['value'])} "
                        f"(reference range {_range_text(f['range'])})</li>" for f in flags)
        return [f'<div class="flags"><b>{len(flags)} number(s) off their reference range</b><ul>{items}</ul>'
                "No single number decides: read them together.</div>"]
    if report.get("ranges", {}):
        return ['<div class="ok">Every headline number is inside its reference range.</div>']
    return []


def _calibration_note() -> str:
    references = ", ".join(f"<b>{name}</b> {what}" for name, what in REFERENCE_DREAMS.items())
    return ('<p class="small">Each reference dream is built from the source and scored by the same code: '
            f"{references}. The reference range of a number lies halfway between a good anchor and the "
            "reference showing the defect (docs/metrics.md). Red: off range.</p>")


def _headline_section(report: dict) -> list[str]:
    """The headline numbers of the dream beside their range and every reference dream's value."""
    metrics, ranges, cal = report.get("metrics", {}), report.get("ranges", {}), report.get("calibration", {})
    names = [n for n in REFERENCE_NAMES if n in cal]
    rows = []
    for key, label, why in HEADLINE:
        if get(metrics, key) is None and not any(get(cal[n]["metrics"], key) is not None for n in names):
            continue
        cells = "".join(_cell(cal[n], key, "rflag") for n in names)
        rows.append(f'<tr><td class="l">{_e(label)}</td>{_cell(report, key, "flag")}'
                    f"<td>{_range_text(ranges.get(key))}</td>{cells}<td class=\"why\">{_e(why)}</td></tr>")
    head = _heads(names)
    return ["<h2>Headline numbers and calibration</h2>", _calibration_note(),
            f'<table><tr><th class="l">metric</th><th>dream</th><th>reference range</th>{head}'
            f'<th class="l">what it means</th></tr>{"".join(rows)}</table>']


def _cell(scored: dict, key: str, flag_class: str | None = None) -> str:
    """The value of `key` in a report or calibration entry as a table cell, marked `flag_class` when flagged."""
    cls = f' class="{flag_class}"' if flag_class and key in flagged(scored) else ""
    return f"<td{cls}>{format_value(key, get(scored.get('metrics', {}), key))}</td>"


def _heads(names) -> str:
    return "".join(f"<th>{_e(name)}</th>" for name in names)


def _model_section(metrics: dict) -> list[str]:
    rec, pred = metrics.get("reconstruction"), metrics.get("prediction")
    if not (rec or pred):
        return []
    return ["<h2>The model on held-out footage</h2>", *(_reconstruction_table(rec) if rec else []),
            *(_prediction_table(pred) if pred else [])]


def _reconstruction_table(rec: dict) -> list[str]:
    out = ['<table><tr><th class="l">reconstruction</th><th>value</th><th class="l">what it means</th></tr>']
    for k in ("psnr", "ssim", "sharpness_ratio", "realism_ratio"):
        if k not in rec:  # reports written before these ratios existed
            continue
        out.append(f'<tr><td class="l">{k.upper().replace("_", " ")}</td><td>{format_value(k, rec.get(k))}</td>'
                   f'<td class="why">{_e(MODEL_EXPLAIN["reconstruction." + k])}</td></tr>')
    return out + ["</table>"]


def _prediction_table(pred: dict) -> list[str]:
    steps = [("teacher-forced (1 step)", pred.get("teacher_forced"))]
    steps += [(f"open loop, k = {k}", v) for k, v in (pred.get("open_loop") or {}).items()]
    out = ['<table><tr><th class="l">prediction</th><th>NLL</th><th>MSE</th><th>PSNR (dB)</th></tr>']
    for label, entry in steps:
        cells = "".join(f"<td>{format_value(k, entry.get(k) if entry else None)}</td>" for k in ("nll", "mse", "psnr"))
        out.append(f'<tr><td class="l">{_e(label)}</td>{cells}</tr>')
    out.append("</table><ul class=\"small\">" + "".join(
        f"<li><b>{k.upper()}</b>: {_e(MODEL_EXPLAIN['prediction.' + k])}</li>" for k in ("nll", "mse", "psnr"))
        + f"<li>Open loop: after {_e(pred.get('context'))} true latents the RNN is fed its own point "
        "predictions; k = steps ahead. '-': held-out sequences too short for that k.</li></ul>")
    png = plots.prediction_plot(pred)
    if png:
        out.append(_img(png, "plot", "prediction PSNR against steps ahead"))
    return out


def _strips_section(strips: dict | None) -> list[str]:
    if not strips:
        return []
    return ["<h2>Frames</h2>"] + [f"<div>{_e(label)}</div>" + _img(strip_png(frames), "strip", label)
                                  for label, frames in strips.items() if frames is not None and len(frames) > 0]


# (series key, title, x label, alt text) of the histograms, in report order
HISTOGRAMS = [
    ("diff", "consecutive-frame difference", "mean |difference| (grey levels)", "frame difference histogram"),
    ("flow", "optical flow magnitude (Farneback)", "px per frame", "flow histogram"),
    ("nn_distance", "distance to the nearest training frame", "RMS distance, 16x16 thumbnails (grey levels)",
     "nearest frame histogram"),
]


def _plots_section(series: dict, fps: float) -> list[str]:
    out = ["<h2>Distributions and curves</h2>"]
    out += [_img(plots.hist_plot(series[key], title, xlabel), "plot", alt)
            for key, title, xlabel, alt in HISTOGRAMS if key in series]
    if "clusters" in series:
        out.append(_img(plots.clusters_plot(series["clusters"]), "plot", "cluster visits"))
    if series.get("drift", {}).get("dream"):
        out.append("<h3>Long-horizon drift</h3>"
                   '<p class="small">Each point is one window of '
                   f"{series['drift']['window_frames']} frames; the source's own windows show how much it varies by itself.</p>")
        out.append(_img(plots.drift_plot(series["drift"], fps), "plot", "drift curves"))
    if series.get("diversity"):
        out.append(_img(plots.diversity_plot(series["diversity"], fps), "plot", "diversity curve"))
    return out


def _every_number(metrics: dict) -> list[str]:
    """Every number of the dream's own groups (the model's have their tables), folded away."""
    out = ["<h2>Every number</h2><details><summary>show</summary><table>"
           '<tr><th class="l">number</th><th>dream</th><th class="l">what it means</th></tr>']
    for group, values in metrics.items():
        if group in ("reconstruction", "prediction") or not isinstance(values, dict):
            continue
        for name, value in values.items():
            key = f"{group}.{name}"
            out.append(f'<tr><td class="l">{_e(key)}</td><td>{_e(format_value(key, value))}</td>'
                       f'<td class="why">{_e(EXPLAIN.get(key, ""))}</td></tr>')
    return out + ["</table></details>"]


def _timings_line(report: dict) -> list[str]:
    timings = report.get("timings", {})
    if not timings:
        return []
    return ['<p class="small">Timings: ' + ", ".join(f"{_e(k)} {v:.1f}" for k, v in timings.items()
                                                    if isinstance(v, (int, float))) + "</p>"]


# ---------------------------------------------------------------------------------------------- compare


def write_compare_html(path: Path, reports: list[tuple[str, dict]]) -> Path:
    """One page with the headline numbers of several reports side by side, and each one's calibration."""
    body = ["<h1>dreamvid compare</h1>", _compare_table(reports),
            '<p class="small">Red: outside the reference range calibrated on that run\'s own source.</p>']
    for name, report in reports:
        body += _calibration_summary(name, report)
    _write_page(path, _page("dreamvid compare", body))
    return path


def _compare_table(reports: list[tuple[str, dict]]) -> str:
    rows = []
    for key, label, why in HEADLINE:
        cells = "".join(_cell(report, key, "flag") for _, report in reports)
        rows.append(f'<tr><td class="l">{_e(label)}</td>{cells}<td class="why">{_e(why)}</td></tr>')
    for key, label in (("reconstruction.psnr", "reconstruction PSNR"), ("reconstruction.ssim", "reconstruction SSIM")):
        cells = "".join(_cell(report, key) for _, report in reports)
        rows.append(f'<tr><td class="l">{label}</td>{cells}<td class="why">{_e(MODEL_EXPLAIN[key])}</td></tr>')
    head = _heads(name for name, _ in reports)
    return f'<table><tr><th class="l">metric</th>{head}<th class="l">what it means</th></tr>{"".join(rows)}</table>'


def _calibration_summary(name: str, report: dict) -> list[str]:
    """One report's headline numbers beside its range and its reference dreams' values."""
    meta = report.get("meta", {})
    out = [f"<h2>{_e(name)}</h2><p class='small'>{_e(meta.get('run_dir', ''))} &middot; "
           f"{_e(meta.get('dream', ''))} &middot; {_e(meta.get('dream_frames', ''))} frames</p>"]
    cal = report.get("calibration", {})
    names = [n for n in REFERENCE_NAMES if n in cal]
    if not names:
        return out
    rows = []
    for key, label, _ in HEADLINE:
        cells = "".join(_cell(cal[n], key) for n in names)
        rows.append(f'<tr><td class="l">{_e(label)}</td>{_cell(report, key)}'
                    f"<td>{_range_text(report.get('ranges', {}).get(key))}</td>{cells}</tr>")
    head = _heads(names)
    return out + [f'<table><tr><th class="l">metric</th><th>dream</th><th>range</th>{head}</tr>{"".join(rows)}</table>']
