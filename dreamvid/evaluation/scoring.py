"""Scoring a dream against its source: every weight-free metric group of docs/metrics.md, from frame arrays.

`score` works on any frame arrays, so a model's dream and the reference dreams built from the source
(`metrics.reference_dreams`) go through the same code. Its output is {"metrics": {group: {name: number}},
"series": {...data for plots...}}; `get` reads one number from the metrics by its dotted key ("motion.diff_ratio").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DreamvidError, UsageError
from . import metrics as M

DIVERSITY_DREAMS = 8       # dreams started from one seed frame ...
DIVERSITY_HORIZON = 64     # ... each this many frames long
DRIFT_WINDOWS = 10         # a dream is cut into about this many windows ...
DRIFT_MAX_WINDOWS = 60     # ... and at most this many


def get(metrics: dict, key: str):
    """The number at dotted `key` ("group.name") of a metrics dict, or None where there is none."""
    group, _, name = key.partition(".")
    values = metrics.get(group)
    return values.get(name) if isinstance(values, dict) else None


def check_frames(frames, what: str, side: int | None = None) -> np.ndarray:
    """`frames` as a uint8 array (N, S, S, 3), at `side` px when given, or a usage error naming `what`."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[1] != arr.shape[2] or arr.dtype != np.uint8:
        raise UsageError(f"{what} must be uint8 frames (N, S, S, 3), got {arr.dtype} {arr.shape}")
    if side is not None and arr.shape[1] != side:
        raise UsageError(f"{what} are {arr.shape[1]} px but the source is {side} px",
                         "read both at the same size")
    return arr


def prepare_source(train_frames, heldout_frames, fps: float, seed: int = 0) -> M.Source:
    """Everything scoring needs from the source (features, patch bank, clusters, motion statistics)."""
    try:
        return M.Source(train_frames, heldout_frames, float(fps), seed)
    except ValueError as error:
        raise DreamvidError(f"cannot evaluate against this source: {error}",
                            "train on a longer video (held-out frames are the last 10% of each)") from None


def score(dream_frames, train_frames=None, heldout_frames=None, fps: float | None = None, *,
          source: M.Source | None = None, diversity_dreams=None, seed: int = 0) -> dict:
    """Score `dream_frames` (uint8 (N, S, S, 3), N >= 2) against the source.

    Pass the training and held-out frames (arrays or lists of per-source arrays) and the frame rate, or a
    `source` from `prepare_source` to share that work between several videos. `diversity_dreams`: optional
    list of >= 2 arrays (T, S, S, 3), dreams started from the same seed frame. Returns
    {"metrics": {group: {name: number}}, "series": {...data for plots...}}.
    """
    src = source if source is not None else prepare_source(train_frames, heldout_frames, fps, seed)
    dream = check_frames(dream_frames, "dream frames", src.side)
    if len(dream) < 2:
        raise UsageError(f"a dream needs at least 2 frames to score, got {len(dream)}")
    frames = per_frame(dream, src, seed)
    out: dict = {}
    series: dict = {}
    out["realism"] = realism(frames, src)
    out["copying"], series["nn_distance"] = copying(frames, src)
    out["coverage"], series["clusters"] = coverage(frames, src)
    out["motion"], motion_series = motion(dream, frames, src)
    series.update(motion_series)
    out["sharpness"] = sharpness(frames, src)
    out["drift"], series["drift"] = drift(frames, src)
    if diversity_dreams is not None and len(diversity_dreams) >= 2:
        out["diversity"], series["diversity"] = diversity(diversity_dreams, src)
    out["length"] = {"frames": int(len(dream)), "seconds": len(dream) / src.fps}
    return {"metrics": out, "series": series}


@dataclass
class PerFrame:
    """The dream's per-frame values that several metric groups and the drift windows share."""
    count: int
    feats: torch.Tensor        # 16x16 thumbnails
    realism_idx: np.ndarray    # the frames sampled for patch realism ...
    realism_dist: np.ndarray   # ... and each one's mean patch distance to the bank
    nn_idx: np.ndarray         # nearest training frame ...
    nn_dist: np.ndarray        # ... and the exact RMS distance to it
    copies: np.ndarray         # nn_dist within the copy threshold
    cluster: np.ndarray        # nearest k-means centroid of the source
    diffs: np.ndarray          # one per consecutive pair
    lap: np.ndarray
    lum: np.ndarray


def per_frame(dream: np.ndarray, src: M.Source, seed: int = 0) -> PerFrame:
    feats = M.frame_features(dream)
    realism_idx, realism_dist = M.patch_distances(dream, src.bank, seed=seed)
    _, nn_idx = M.nearest(feats, src.feats)
    nn_dist = M.rms(feats, src.feats[nn_idx]).numpy()
    return PerFrame(count=len(dream), feats=feats, realism_idx=realism_idx, realism_dist=realism_dist,
                    nn_idx=nn_idx.numpy(), nn_dist=nn_dist, copies=nn_dist <= src.copy_threshold,
                    cluster=M.nearest(feats, src.centroids)[1].numpy(), diffs=M.consecutive_diffs([dream]),
                    lap=M.laplacian_var(dream), lum=M.luminance(dream))


def realism_ratio(frames: np.ndarray, src: M.Source, seed: int = 0) -> float:
    """The realism ratio of `frames` (the reconstructions' beside the dream's)."""
    return M.ratio(float(M.patch_distances(frames, src.bank, seed=seed)[1].mean()), src.heldout_patch)


def realism(frames: PerFrame, src: M.Source) -> dict:
    """Patch nearest neighbour, as a ratio to held-out source frames."""
    patch = float(frames.realism_dist.mean())
    return {"patch_distance": patch, "heldout_patch_distance": src.heldout_patch,
            "ratio": M.ratio(patch, src.heldout_patch)}


def copying(frames: PerFrame, src: M.Source) -> tuple[dict, dict]:
    """Novelty and replay runs, from each dream frame's nearest whole source frame."""
    tau, nn_dist = src.copy_threshold, frames.nn_dist
    runs = M.copy_runs(frames.feats, src.feats, src.nxt, frames.nn_idx, nn_dist, tau)
    longest = int(runs.max()) if len(runs) else 0
    group = {"threshold": tau, "nn_distance_median": float(np.median(nn_dist)),
             "novelty": M.ratio(float(np.median(nn_dist)), tau, 1e-3),
             "copy_share": float(frames.copies.mean()), "longest_run_frames": longest,
             "longest_run_s": longest / src.fps,
             "long_run_share": float((runs >= max(2, round(src.fps))).mean())}
    hi = max(float(np.quantile(nn_dist, 0.99)), 2 * tau, 1.0)
    edges = np.linspace(0, hi, M.HIST_BINS + 1)
    return group, {"edges": edges.tolist(), "dream": M.histogram(nn_dist, edges), "threshold": tau}


def coverage(frames: PerFrame, src: M.Source) -> tuple[dict, dict]:
    """Visits of the k-means clusters of the source frames."""
    k = len(src.centroids)
    hist = np.bincount(frames.cluster, minlength=k).astype(np.float64)
    group = {"clusters": k, "visited_share": float((hist > 0).sum() / k),
             "js_divergence": M.js_divergence(hist, src.cluster_hist)}
    return group, {"dream": (hist / hist.sum()).tolist(),
                   "source": (src.cluster_hist / src.cluster_hist.sum()).tolist()}


def motion(dream: np.ndarray, frames: PerFrame, src: M.Source) -> tuple[dict, dict]:
    """Frame differences, optical flow, frozen pairs and flicker, beside the source's."""
    diffs, flows = frames.diffs, M.flow_magnitudes([dream])
    flick = M.flicker_values([dream])
    flicker = float(flick.mean()) if len(flick) else 0.0
    group = {**_against_source("diff", diffs, src.diffs), **_against_source("flow", flows, src.flows),
             "frozen_share": float((diffs < M.FROZEN_DIFF).mean()),
             "source_frozen_share": float((src.diffs < M.FROZEN_DIFF).mean()) if len(src.diffs) else 0.0,
             "flicker": flicker, "source_flicker": src.flicker,
             "flicker_ratio": M.ratio(flicker, src.flicker, 0.05)}
    return group, {"diff": _histograms(diffs, src.diffs), "flow": _histograms(flows, src.flows)}


def _against_source(name: str, values: np.ndarray, source_values: np.ndarray) -> dict:
    """Mean, source mean, their ratio and the distance between the two distributions, for diff or flow."""
    mean, source_mean = float(values.mean()), float(source_values.mean())
    distance = M.wasserstein(values, source_values)
    return {f"{name}_mean": mean, f"source_{name}_mean": source_mean,
            f"{name}_ratio": M.ratio(mean, source_mean, 1e-3),
            f"{name}_wasserstein": distance,
            f"{name}_wasserstein_rel": M.ratio(distance, source_mean, 1e-3)}


def _histograms(values: np.ndarray, source_values: np.ndarray) -> dict:
    top = max(float(np.quantile(np.concatenate([values, source_values]), 0.99)), 1e-3)
    edges = np.linspace(0, top, M.HIST_BINS + 1)
    return {"edges": edges.tolist(), "dream": M.histogram(values, edges),
            "source": M.histogram(source_values, edges)}


def sharpness(frames: PerFrame, src: M.Source) -> dict:
    """Variance of the Laplacian, dream over source."""
    lap, source_lap = float(frames.lap.mean()), float(src.lap.mean())
    return {"laplacian_var": lap, "source_laplacian_var": source_lap, "ratio": M.ratio(lap, source_lap, 1e-3)}


def diversity(dreams, src: M.Source) -> tuple[dict, list]:
    """Spread across dreams from one seed frame, over the source's own pixel spread."""
    curve = diversity_curve(dreams) / max(src.pixel_std, 1e-6)
    tail = curve[len(curve) * 3 // 4:] if len(curve) >= 4 else curve
    group = {"dreams": len(dreams), "horizon": int(len(curve)), "normalized": float(tail.mean()),
             "source_pixel_std": src.pixel_std}
    return group, curve.tolist()


def diversity_curve(dreams) -> np.ndarray:
    """Pixel-wise standard deviation across dreams at each step, averaged over pixels (grey levels)."""
    t = min(len(d) for d in dreams)
    stack = np.stack([np.asarray(d[:t]) for d in dreams]).astype(np.float32)  # (N, T, S, S, 3)
    return stack.std(0).reshape(t, -1).mean(1)


# ---------------------------------------------------------------------------------------------- drift


def drift(frames: PerFrame, src: M.Source) -> tuple[dict, dict]:
    """Long-horizon drift: the per-frame numbers above per window, beside the source's own windows."""
    w, enough = _window_frames(frames.count, len(src.frames))
    if not enough:
        return {"window_frames": w, "max_ratio": None, "worst": None}, {}
    dream_windows, src_windows = _windows(frames.count, w), _windows(len(src.frames), w)
    dream_curves = _dream_curves(frames, dream_windows, src)
    src_curves = _source_curves(src, src_windows)
    ratios = _spread_ratios(dream_curves, src_curves)
    worst = max(ratios, key=ratios.get) if ratios else None
    result = {"window_frames": w, "windows": len(dream_windows), "source_windows": len(src_windows),
              **{f"{name}_ratio": value for name, value in ratios.items()},
              "max_ratio": ratios[worst] if worst else None, "worst": worst}
    return result, {"window_frames": w, "dream": dream_curves, "source": src_curves}


def _window_frames(dream_len: int, source_len: int) -> tuple[int, bool]:
    """Frames per window, and whether the dream has two windows and the source one."""
    w = max(2, min(dream_len // DRIFT_WINDOWS, source_len // 5))
    if dream_len < 2 * w or source_len < w:
        return w, False
    return (dream_len // DRIFT_MAX_WINDOWS if dream_len // w > DRIFT_MAX_WINDOWS else w), True


def _windows(n: int, w: int) -> list[tuple[int, int]]:
    return [(i, i + w) for i in range(0, n - w + 1, w)]


def _dream_curves(frames: PerFrame, windows: list, src: M.Source) -> dict:
    realism_windows = _window_means(windows, frames.realism_dist, frames.realism_idx)
    return {
        "motion": _window_means(windows, frames.diffs),
        "sharpness": _window_means(windows, frames.lap),
        "brightness": _window_means(windows, frames.lum),
        "cluster_js": _window_js(windows, frames.cluster, src),
        "realism": [None if v is None else v / max(src.heldout_patch, 1e-6) for v in realism_windows],
        "copy_share": _window_means(windows, frames.copies.astype(np.float64)),
    }


def _source_curves(src: M.Source, windows: list) -> dict:
    pair_pos = np.nonzero(src.nxt >= 0)[0]  # each source pair's first frame in the concatenated training frames
    return {
        "motion": _window_means(windows, src.diffs, pair_pos),
        "sharpness": _window_means(windows, src.lap),
        "brightness": _window_means(windows, src.lum),
        "cluster_js": _window_js(windows, src.assign, src),
    }


def _window_means(windows: list, values: np.ndarray, positions: np.ndarray | None = None) -> list:
    """The mean of the values whose position (default: their index) lies in each window; None for none."""
    pos = np.arange(len(values)) if positions is None else positions
    out = []
    for a, b in windows:
        sel = values[(pos >= a) & (pos < b)]
        out.append(float(sel.mean()) if len(sel) else None)
    return out


def _window_js(windows: list, labels: np.ndarray, src: M.Source) -> list:
    k = len(src.centroids)
    return [M.js_divergence(np.bincount(labels[a:b], minlength=k), src.cluster_hist) for a, b in windows]


def _spread_ratios(dream_curves: dict, src_curves: dict) -> dict:
    """Per metric: the spread across dream windows over that across source windows (floored)."""
    ratios = {}
    for name, source_values in src_curves.items():
        d = np.array([v for v in dream_curves[name] if v is not None])
        s = np.array([v for v in source_values if v is not None])
        if len(d) < 2 or len(s) < 2:
            continue
        floor = 0.05 * abs(float(s.mean())) + 1e-3
        ratios[name] = float(d.std() / max(float(s.std()), floor))
    return ratios
