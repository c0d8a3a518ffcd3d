"""`dreamvid eval` and `dreamvid compare`: weight-free metrics of a dream, calibrated by reference dreams.

`score` works on any frame arrays, so a model's dream and the reference dreams built from the source
(`metrics.reference_dreams`: replay, shuffled, frozen, blurred, texture) go through the same code;
`calibrate` scores the references and `flag_ranges` turns them into a reference range per headline number.
`evaluate` adds the model's own numbers (reconstruction, prediction, diversity) for a run and writes the
report; `report_from_frames` does the same from plain arrays. docs/metrics.md defines every number.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from .errors import DreamvidError, UsageError

REPORT_VERSION = 1
DIVERSITY_DREAMS = 8
DIVERSITY_HORIZON = 64
PREDICTION_KS = (1, 8, 32)
PREDICTION_CONTEXT = 16
DRIFT_WINDOWS = 10

# ---------------------------------------------------------------------------------------------- scoring


def _check_frames(frames, what: str, side: int | None = None) -> np.ndarray:
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
    dream = _check_frames(dream_frames, "dream frames", src.side)
    if len(dream) < 2:
        raise UsageError(f"a dream needs at least 2 frames to score, got {len(dream)}")
    out: dict = {}
    series: dict = {}
    feats = M.frame_features(dream)

    # Realism: patch nearest neighbour, as a ratio to held-out source frames.
    ridx, rdist = M.patch_distances(dream, src.bank, seed=seed)
    patch = float(rdist.mean())
    out["realism"] = {"patch_distance": patch, "heldout_patch_distance": src.heldout_patch,
                      "ratio": M.ratio(patch, src.heldout_patch)}

    # Novelty / copying: nearest whole source frame.
    _, nn_idx = M.nearest(feats, src.feats)
    nn_dist = M.rms(feats, src.feats[nn_idx]).numpy()
    nn_idx = nn_idx.numpy()
    tau = src.copy_threshold
    copies = nn_dist <= tau
    runs = M.copy_runs(feats, src.feats, src.nxt, nn_idx, nn_dist, tau)
    longest = int(runs.max()) if len(runs) else 0
    out["copying"] = {"threshold": tau, "nn_distance_median": float(np.median(nn_dist)),
                      "novelty": M.ratio(float(np.median(nn_dist)), tau, 1e-3),
                      "copy_share": float(copies.mean()), "longest_run_frames": longest,
                      "longest_run_s": longest / src.fps,
                      "long_run_share": float((runs >= max(2, round(src.fps))).mean())}
    hi = max(float(np.quantile(nn_dist, 0.99)), 2 * tau, 1.0)
    edges = np.linspace(0, hi, M.HIST_BINS + 1)
    series["nn_distance"] = {"edges": edges.tolist(), "dream": M.histogram(nn_dist, edges), "threshold": tau}

    # Coverage: k-means clusters of source frames.
    assign = M.nearest(feats, src.centroids)[1].numpy()
    k = len(src.centroids)
    hist = np.bincount(assign, minlength=k).astype(np.float64)
    out["coverage"] = {"clusters": k, "visited_share": float((hist > 0).sum() / k),
                       "js_divergence": M.js_divergence(hist, src.cluster_hist)}
    series["clusters"] = {"dream": (hist / hist.sum()).tolist(),
                          "source": (src.cluster_hist / src.cluster_hist.sum()).tolist()}

    # Motion.
    diffs = M.consecutive_diffs([dream])
    flows = M.flow_magnitudes([dream])
    flick = M.flicker_values([dream])
    flicker = float(flick.mean()) if len(flick) else 0.0
    src_diff, src_flow = float(src.diffs.mean()), float(src.flows.mean())
    out["motion"] = {
        "diff_mean": float(diffs.mean()), "source_diff_mean": src_diff,
        "diff_ratio": M.ratio(float(diffs.mean()), src_diff, 1e-3),
        "diff_wasserstein": M.wasserstein(diffs, src.diffs),
        "diff_wasserstein_rel": M.ratio(M.wasserstein(diffs, src.diffs), src_diff, 1e-3),
        "flow_mean": float(flows.mean()), "source_flow_mean": src_flow,
        "flow_ratio": M.ratio(float(flows.mean()), src_flow, 1e-3),
        "flow_wasserstein": M.wasserstein(flows, src.flows),
        "flow_wasserstein_rel": M.ratio(M.wasserstein(flows, src.flows), src_flow, 1e-3),
        "frozen_share": float((diffs < M.FROZEN_DIFF).mean()),
        "source_frozen_share": float((src.diffs < M.FROZEN_DIFF).mean()) if len(src.diffs) else 0.0,
        "flicker": flicker, "source_flicker": src.flicker,
        "flicker_ratio": M.ratio(flicker, src.flicker, 0.05),
    }
    for name, values, ref in (("diff", diffs, src.diffs), ("flow", flows, src.flows)):
        top = max(float(np.quantile(np.concatenate([values, ref]), 0.99)), 1e-3)
        e = np.linspace(0, top, M.HIST_BINS + 1)
        series[name] = {"edges": e.tolist(), "dream": M.histogram(values, e), "source": M.histogram(ref, e)}

    # Sharpness.
    lap = M.laplacian_var(dream)
    out["sharpness"] = {"laplacian_var": float(lap.mean()), "source_laplacian_var": float(src.lap.mean()),
                        "ratio": M.ratio(float(lap.mean()), float(src.lap.mean()), 1e-3)}

    # Long-horizon drift: the numbers above per window, beside the source's own windows.
    lum = M.luminance(dream)
    drift, drift_series = _drift(src, dream_len=len(dream), diffs=diffs, lap=lap, lum=lum, assign=assign,
                                 ridx=ridx, rdist=rdist, copies=copies)
    out["drift"] = drift
    series["drift"] = drift_series

    # Diversity across dreams from one seed frame.
    if diversity_dreams is not None and len(diversity_dreams) >= 2:
        curve = diversity_curve(diversity_dreams) / max(src.pixel_std, 1e-6)
        tail = curve[len(curve) * 3 // 4:] if len(curve) >= 4 else curve
        out["diversity"] = {"dreams": len(diversity_dreams), "horizon": int(len(curve)),
                            "normalized": float(tail.mean()), "source_pixel_std": src.pixel_std}
        series["diversity"] = curve.tolist()
    out["length"] = {"frames": int(len(dream)), "seconds": len(dream) / src.fps}
    return {"metrics": out, "series": series}


def diversity_curve(dreams) -> np.ndarray:
    """Pixel-wise standard deviation across dreams at each step, averaged over pixels (grey levels)."""
    t = min(len(d) for d in dreams)
    stack = np.stack([np.asarray(d[:t]) for d in dreams]).astype(np.float32)  # (N, T, S, S, 3)
    return stack.std(0).reshape(t, -1).mean(1)


def _windows(n: int, w: int) -> list[tuple[int, int]]:
    return [(i, i + w) for i in range(0, n - w + 1, w)]


def _drift(src: M.Source, *, dream_len, diffs, lap, lum, assign, ridx, rdist, copies):
    m = len(src.frames)
    w = max(2, min(dream_len // DRIFT_WINDOWS, m // 5))
    if dream_len < 2 * w or m < w:
        return {"window_frames": w, "max_ratio": None, "worst": None}, {}
    if dream_len // w > 60:
        w = dream_len // 60
    dream_windows = _windows(dream_len, w)
    src_windows = _windows(m, w)
    # Source pair positions (index of a pair's first frame in the concatenated training frames).
    pair_pos = np.concatenate([start + np.arange(len(s) - 1) for start, s in
                               zip(np.cumsum([0] + [len(s) for s in src.train[:-1]]), src.train)])
    k = len(src.centroids)

    def per_window(windows, values, positions=None):
        out = []
        pos = np.arange(len(values)) if positions is None else positions
        for a, b in windows:
            sel = values[(pos >= a) & (pos < b)]
            out.append(float(sel.mean()) if len(sel) else None)
        return out

    def js_windows(windows, labels):
        return [M.js_divergence(np.bincount(labels[a:b], minlength=k), src.cluster_hist) for a, b in windows]

    dream_curves = {
        "motion": per_window(dream_windows, diffs),
        "sharpness": per_window(dream_windows, lap),
        "brightness": per_window(dream_windows, lum),
        "cluster_js": js_windows(dream_windows, assign),
        "realism": [None if v is None else v / max(src.heldout_patch, 1e-6)
                    for v in per_window(dream_windows, rdist, ridx)],
        "copy_share": per_window(dream_windows, copies.astype(np.float64)),
    }
    src_curves = {
        "motion": per_window(src_windows, src.diffs, pair_pos),
        "sharpness": per_window(src_windows, src.lap),
        "brightness": per_window(src_windows, src.lum),
        "cluster_js": js_windows(src_windows, src.assign),
    }
    ratios = {}
    for name, source_values in src_curves.items():
        d = np.array([v for v in dream_curves[name] if v is not None])
        s = np.array([v for v in source_values if v is not None])
        if len(d) < 2 or len(s) < 2:
            continue
        floor = 0.05 * abs(float(s.mean())) + 1e-3
        ratios[name] = float(d.std() / max(float(s.std()), floor))
    worst = max(ratios, key=ratios.get) if ratios else None
    result = {"window_frames": w, "windows": len(dream_windows), "source_windows": len(src_windows),
              **{f"{name}_ratio": value for name, value in ratios.items()},
              "max_ratio": ratios[worst] if worst else None, "worst": worst}
    return result, {"window_frames": w, "dream": dream_curves, "source": src_curves}


# ---------------------------------------------------------------------------------------------- calibration


def calibrate(source: M.Source, n_frames: int, *, seed: int = 0, names=M.REFERENCE_NAMES,
              diversity: tuple[int, int] = (DIVERSITY_DREAMS, DIVERSITY_HORIZON), progress=None) -> dict:
    """Score each reference dream (`n_frames` long) with `score` against `source`: {name: score output}."""
    results = {}
    n_div, horizon = diversity
    start = int(np.random.default_rng(seed + 7).integers(len(source.frames)))
    for name in names:
        dist = source.distances() if name == "texture" else None
        frames = M.reference_dream(name, source.train, n_frames, seed, fps=source.fps, dist=dist)
        variants = [M.reference_dream(name, source.train, horizon, seed + 1 + k, fps=source.fps, start=start,
                                      dist=dist)
                    for k in range(n_div)] if n_div >= 2 else None
        results[name] = score(frames, source=source, diversity_dreams=variants, seed=seed)
        results[name]["strip"] = frames[M.evenly(len(frames), 8)]
        del frames
        if progress is not None:
            progress(name)
    return results


def get(metrics: dict, key: str):
    group, _, name = key.partition(".")
    value = metrics.get(group, {}).get(name) if isinstance(metrics.get(group), dict) else None
    return value


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


# (key, which side is bad, good anchor, bad reference(s) or fixed bound, fallback bound, minimal margin)
FLAG_RULES = [
    ("realism.ratio", "high", 1.0, ("blurred",), 1.5, 0.1),
    ("copying.copy_share", "high", 0.0, ("replay",), 0.5, 0.1),
    ("copying.longest_run_s", "high", 0.0, ("texture",), 2.0, 0.5),
    ("coverage.visited_share", "low", "replay", ("frozen",), 0.5, 0.1),
    ("coverage.js_divergence", "high", "replay", ("frozen",), 0.3, 0.05),
    ("motion.diff_ratio", "low", 1.0, ("frozen",), 0.5, 0.1),
    ("motion.diff_ratio", "high", 1.0, ("shuffled",), 2.0, 0.2),
    ("motion.diff_wasserstein_rel", "high", "replay", ("frozen", "shuffled"), 0.5, 0.1),
    ("motion.flow_ratio", "low", 1.0, ("frozen",), 0.5, 0.1),
    ("motion.flow_ratio", "high", 1.0, ("shuffled",), 2.0, 0.2),
    ("motion.flow_wasserstein_rel", "high", "replay", ("frozen", "shuffled"), 0.5, 0.1),
    ("motion.frozen_share", "high", "replay", ("frozen",), 0.5, 0.05),
    ("motion.flicker_ratio", "high", 1.0, ("shuffled",), 3.0, 0.5),
    ("sharpness.ratio", "low", 1.0, ("blurred",), 0.6, 0.1),
    ("sharpness.ratio", "high", 1.0, (), 2.0, 0.5),
    ("diversity.normalized", "low", "texture", ("replay",), None, 0.05),
    ("drift.max_ratio", "high", 1.0, (), 3.0, 0.5),
]


def flag_ranges(calibration: dict) -> dict:
    """Reference range {key: [low, high]} per headline number, from the calibration (see docs/metrics.md).

    Each bound sits halfway between a good anchor (the source's own value, or a reference that is right on
    this count) and the reference dream that shows the defect; it is never closer to the good anchor than a
    minimal margin, and falls back to a fixed bound when the defect's reference does not show the defect on
    this footage.
    """
    ranges: dict[str, list] = {}
    for key, side, good, bad_refs, fallback, margin in FLAG_RULES:
        cal = {name: _num(get(res["metrics"], key)) for name, res in calibration.items()}
        good_value = _num(cal.get(good)) if isinstance(good, str) else float(good)
        bound = None
        if good_value is not None:
            bads = [cal.get(name) for name in bad_refs if cal.get(name) is not None]
            if side == "high":
                bads = [b for b in bads if b > good_value + margin]
                bound = good_value + (min(bads) - good_value) / 2 if bads else fallback
                if bound is not None:
                    bound = max(bound, good_value + margin)
            else:
                bads = [b for b in bads if b < good_value - margin]
                bound = good_value - (good_value - max(bads)) / 2 if bads else fallback
                if bound is not None:
                    bound = min(bound, good_value - margin)
        elif fallback is not None:
            bound = fallback
        low, high = ranges.get(key, [None, None])
        if side == "high":
            high = bound
        else:
            low = bound
        ranges[key] = [low, high]
    return ranges


def flags_for(metrics_: dict, ranges: dict) -> list[dict]:
    """The headline numbers outside their reference range."""
    out = []
    for key, (low, high) in ranges.items():
        value = _num(get(metrics_, key))
        if value is None:
            continue
        if low is not None and value < low:
            out.append({"metric": key, "value": value, "range": [low, high], "side": "low"})
        elif high is not None and value > high:
            out.append({"metric": key, "value": value, "range": [low, high], "side": "high"})
    return out


# ---------------------------------------------------------------------------------------------- model metrics


def _encode_all(dreamer, frames: np.ndarray, chunk: int = 256) -> torch.Tensor:
    mus = []
    with torch.no_grad():
        for i in range(0, len(frames), chunk):
            mu, _ = dreamer.encode(np.ascontiguousarray(frames[i:i + chunk]))
            mus.append(torch.as_tensor(mu).float().cpu())
    return torch.cat(mus)


def _decode_all(dreamer, z: torch.Tensor, chunk: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([np.asarray(dreamer.decode(z[i:i + chunk])) for i in range(0, len(z), chunk)])


def reconstruction(dreamer, heldout: list[np.ndarray], max_frames: int = 512) -> tuple[dict, np.ndarray]:
    """PSNR, SSIM and sharpness ratio of the VAE's reconstructions (decoded means) of held-out frames, and
    the reconstructions. The sharpness ratio is the ceiling for a dream's: dreams are decoded by the same
    decoder."""
    frames = M.concat(heldout)
    frames = frames[M.evenly(len(frames), max_frames)]
    recon = _decode_all(dreamer, _encode_all(dreamer, frames))
    result = M.psnr_ssim(recon, frames)
    result["sharpness_ratio"] = M.ratio(float(M.laplacian_var(recon).mean()), float(M.laplacian_var(frames).mean()))
    result["frames"] = int(len(frames))
    return result, recon


def _initial_state(rnn, batch: int):
    init = getattr(rnn, "initial_state", None)
    return init(batch) if callable(init) else None


def prediction(dreamer, heldout: list[np.ndarray], ks=PREDICTION_KS, context: int = PREDICTION_CONTEXT,
               max_starts: int = 64, max_decode: int = 256) -> dict:
    """Latent NLL and MSE and decoded-frame PSNR of the RNN on held-out sequences.

    Teacher-forced: each step is fed the true latent, predicting the next one. Open-loop at k: after
    `context` true latents, the RNN is fed its own point predictions (`rnn.mean`) and scored k steps on.
    """
    rnn = dreamer.rnn
    device = next(iter(rnn.parameters()), torch.zeros(0)).device
    tf_nll, tf_mse, tf_pred, tf_target = [], [], [], []
    ol = {k: {"nll": [], "mse": [], "pred": [], "target": []} for k in ks}
    kmax = max(ks)
    with torch.no_grad():
        for seq in heldout:
            if len(seq) < 2:
                continue
            z = _encode_all(dreamer, seq).to(device)
            state = _initial_state(rnn, 1)
            preds = []
            for t in range(len(z) - 1):
                params, state = rnn.step(z[t:t + 1], state)
                tf_nll.append(float(rnn.nll(params, z[t + 1:t + 2]).mean()))
                mean = rnn.mean(params)
                tf_mse.append(float(((mean - z[t + 1:t + 2]) ** 2).mean()))
                preds.append(mean)
            tf_pred.append(torch.cat(preds))
            tf_target.append(seq[1:])
            # Open loop, batched over start points t0 (the last true latent fed).
            hmax = min(kmax, len(z) - 1 - context)
            if hmax < 1:
                continue
            starts = np.arange(context, len(z) - hmax)
            starts = starts[M.evenly(len(starts), max_starts)]
            state = _initial_state(rnn, len(starts))
            for c in range(context + 1):
                params, state = rnn.step(z[torch.from_numpy(starts - context + c).to(device)], state)
            for k in range(1, hmax + 1):
                if k in ol:
                    target = z[torch.from_numpy(starts + k).to(device)]
                    mean = rnn.mean(params)
                    ol[k]["nll"].append(rnn.nll(params, target).float().cpu())
                    ol[k]["mse"].append(((mean - target) ** 2).mean(1).cpu())
                    ol[k]["pred"].append(mean)
                    ol[k]["target"].append(seq[starts + k])
                if k < hmax:
                    params, state = rnn.step(rnn.mean(params), state)

    def decoded_psnr(preds: list, targets: list) -> float | None:
        if not preds:
            return None
        z = torch.cat(preds)
        target = np.concatenate([np.asarray(t) for t in targets])
        pick = M.evenly(len(z), max_decode)
        return float(M.frame_psnr(_decode_all(dreamer, z[pick]), target[pick]).mean())

    result = {"context": context, "teacher_forced": {
        "nll": float(np.mean(tf_nll)) if tf_nll else None, "mse": float(np.mean(tf_mse)) if tf_mse else None,
        "psnr": decoded_psnr(tf_pred, tf_target), "steps": len(tf_nll)}, "open_loop": {}}
    for k in ks:
        entry = ol[k]
        if entry["nll"]:
            result["open_loop"][str(k)] = {
                "nll": float(torch.cat(entry["nll"]).mean()), "mse": float(torch.cat(entry["mse"]).mean()),
                "psnr": decoded_psnr(entry["pred"], entry["target"]), "starts": int(sum(len(x) for x in entry["nll"]))}
        else:
            result["open_loop"][str(k)] = None
    return result


def model_diversity_dreams(dreamer, *, temperature: float, seed: int, frame_index: int,
                           n: int = DIVERSITY_DREAMS, horizon: int = DIVERSITY_HORIZON) -> list[np.ndarray]:
    """`n` dreams of `horizon` frames from the same seed frame, with seeds seed+1 .. seed+n."""
    dreams = []
    for k in range(n):
        session = dreamer.session(temperature=temperature, seed=seed + 1 + k, frame_index=frame_index)
        frames = np.asarray(session.next_frames(horizon))
        dreams.append(frames)
    return dreams


# ---------------------------------------------------------------------------------------------- reports


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, leave=False)


def report_from_frames(dream_frames, train_frames, heldout_frames, fps: float, *, out=None, seed: int = 0,
                       diversity_dreams=None, model: dict | None = None, reconstructed=None,
                       meta: dict | None = None,
                       calibration: bool = True, progress: bool = False, timings: dict | None = None,
                       started: float | None = None) -> dict:
    """Score a dream given as arrays, calibrate with the reference dreams, and (if `out`) write
    report.json and report.html there. `model`: extra groups (reconstruction, prediction) to include;
    `reconstructed`: the VAE's reconstructions of held-out frames, scored for realism beside the dream;
    `timings`/`started` (a time.perf_counter() value): earlier stages to count in the report's timings."""
    timings = dict(timings or {})
    t0 = time.perf_counter()
    started = t0 if started is None else started
    say = (lambda msg: print(f"eval: {msg}", file=sys.stderr)) if progress else (lambda msg: None)
    say("preparing the source")
    src = prepare_source(train_frames, heldout_frames, fps, seed)
    timings["source_s"] = time.perf_counter() - t0
    dream = _check_frames(dream_frames, "dream frames", src.side)
    t = time.perf_counter()
    say(f"scoring the dream ({len(dream)} frames)")
    result = score(dream, source=src, diversity_dreams=diversity_dreams, seed=seed)
    timings["score_s"] = time.perf_counter() - t
    metrics_ = dict(model or {})
    metrics_.update(result["metrics"])
    if reconstructed is not None and "reconstruction" in metrics_:
        _, recon_patch = M.patch_distances(_check_frames(reconstructed, "reconstructions", src.side), src.bank,
                                           seed=seed)
        metrics_["reconstruction"]["realism_ratio"] = M.ratio(float(recon_patch.mean()), src.heldout_patch)
    cal, ranges = {}, {}
    t = time.perf_counter()
    if calibration:
        cal = calibrate(src, len(dream), seed=seed, progress=lambda name: say(f"scored reference '{name}'"))
        ranges = flag_ranges(cal)
    timings["calibration_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started
    report = {
        "version": REPORT_VERSION,
        "meta": {**(meta or {}), "fps": src.fps, "size": src.side, "dream_frames": int(len(dream)),
                 "train_frames": int(len(src.frames)), "heldout_frames": int(sum(len(s) for s in src.heldout)),
                 "sequences": len(src.train), "seed": seed},
        "metrics": metrics_,
        "flags": flags_for(metrics_, ranges),
        "ranges": ranges,
        "calibration": {name: {"metrics": r["metrics"], "flags": flags_for(r["metrics"], ranges)}
                        for name, r in cal.items()},
        "series": result["series"],
        "timings": timings,
    }
    if out is not None:
        t = time.perf_counter()
        strips = {"dream (spread over the whole dream)": dream[M.evenly(len(dream), 8)],
                  "dream (8 consecutive frames)": dream[len(dream) // 2:len(dream) // 2 + 8],
                  "source (training frames)": src.frames[M.evenly(len(src.frames), 8)],
                  "held-out source": M.concat(src.heldout)[M.evenly(sum(len(s) for s in src.heldout), 8)]}
        for name, r in cal.items():
            strips[f"reference: {name}"] = r["strip"]
        if diversity_dreams is not None and len(diversity_dreams) >= 2:
            strips["diversity: last frame of each dream from one seed frame"] = np.stack(
                [np.asarray(d)[-1] for d in diversity_dreams])
        write_outputs(report, Path(out), strips)
    return report


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_outputs(report: dict, out: Path, strips: dict | None = None) -> None:
    """Write report.json and report.html (with the frame `strips`) into `out`."""
    from .report import write_report

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(_jsonable(report), indent=1))
    except OSError as error:
        raise DreamvidError(f"cannot write the report to {out} ({error.strerror or error})",
                            "choose another -o") from None
    write_report(_jsonable(report), out / "report.html", strips=strips)


def evaluate(run_dir, *, dream=None, frames: int = 10000, temperature: float | None = None, seed: int = 0,
             reproject: bool = False, out=None, progress: bool = True) -> dict:
    """Evaluate a run: generate a `frames`-long dream (or read the video `dream`), score it against the
    run's training and held-out frames, calibrate with reference dreams, add the model's reconstruction,
    prediction and diversity numbers, and write report.json and report.html to `out` (default
    RUN_DIR/eval). `temperature` None uses the run's default; `reproject` dreams as `Dreamer.session` says.
    Returns the report."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UsageError(f"{run_dir} does not exist", "pass a RUN_DIR made by dreamvid train")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder", "pass a RUN_DIR made by dreamvid train")
    if temperature is not None and not temperature > 0:
        raise UsageError(f"temperature must be greater than 0, got {temperature}", "use e.g. --temperature 1.0")
    if dream is None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 2):
        raise UsageError(f"--frames must be a whole number of at least 2, got {frames}")
    if dream is not None:
        if reproject:
            raise UsageError("--reproject changes how a dream is made; a given --dream video is scored as it is",
                             "drop --reproject, or drop --dream to score a new re-projected dream")
        dream = Path(dream)
        if not dream.exists():
            raise UsageError(f"{dream} does not exist", "check the --dream path")
        if dream.is_dir():
            raise UsageError(f"{dream} is a folder, not a video", "pass a video file to --dream")
    out = Path(out) if out is not None else run_dir / "eval"
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", "choose another -o")

    from .dreaming import load

    t0 = time.perf_counter()
    dreamer = load(run_dir)
    if temperature is None:
        temperature = float(dreamer.config.rnn.temperature)
    cache = dreamer.cache
    if cache is None:
        raise DreamvidError(f"{run_dir} has no frame cache left to compare the dream with",
                            f"rebuild it by resuming the run: dreamvid train -o {run_dir} --resume")
    size, fps = int(dreamer.size), float(dreamer.fps)
    train, heldout = cache.split("train"), cache.split("val")
    meta = {"run_dir": str(run_dir), "temperature": temperature, "reproject": reproject}
    t = time.perf_counter()
    if dream is not None:
        from .video import read_frames

        crop = getattr(getattr(dreamer.config, "data", None), "crop", "center")
        frames_list = list(read_frames(dream, size=size, fps=fps, crop=crop))
        if len(frames_list) < 2:
            raise DreamvidError(f"{dream} has {len(frames_list)} frame(s); a dream needs at least 2 to score")
        dream_frames = np.stack(frames_list)
        del frames_list
        meta["dream"] = str(dream)
    else:
        dream_frames = np.empty((frames, size, size, 3), np.uint8)
        bar = _bar(progress, frames, "dreaming")
        n = 0
        for batch in dreamer.dream(frames=frames, temperature=temperature, seed=seed, reproject=reproject).batches():
            batch = np.asarray(batch)[:frames - n]
            dream_frames[n:n + len(batch)] = batch
            n += len(batch)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        dream_frames = dream_frames[:n]
        meta["dream"] = (f"generated: {n} frames at temperature {temperature:g}, seed {seed}"
                         + (", re-projected" if reproject else ""))
    dream_s = time.perf_counter() - t

    t = time.perf_counter()
    if progress:
        print("eval: reconstruction, prediction and diversity on held-out frames", file=sys.stderr)
    recon_metrics, reconstructed = reconstruction(dreamer, heldout)
    model = {"reconstruction": recon_metrics, "prediction": prediction(dreamer, heldout)}
    import random

    seed_frame = int(dreamer.random_frame_index(random.Random(seed)))
    diversity = model_diversity_dreams(dreamer, temperature=temperature, seed=seed, frame_index=seed_frame)
    meta["diversity_seed_frame"] = seed_frame
    model_s = time.perf_counter() - t

    return report_from_frames(dream_frames, train, heldout, fps, out=out, seed=seed, diversity_dreams=diversity,
                              model=model, reconstructed=reconstructed, meta=meta, progress=progress,
                              timings={"dream_s": dream_s, "model_s": model_s}, started=t0)


# ---------------------------------------------------------------------------------------------- compare


def load_report(path) -> tuple[str, dict]:
    """A report from a run folder (RUN_DIR/eval/report.json), a report folder, or a report.json."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist", "pass run folders, report folders or report.json files")
    for candidate in (path, path / "report.json", path / "eval" / "report.json"):
        if candidate.is_file():
            try:
                report = json.loads(candidate.read_text())
            except (OSError, ValueError) as error:
                raise DreamvidError(f"{candidate} is not a readable report ({error})",
                                    "run dreamvid eval again") from None
            if not isinstance(report, dict) or "metrics" not in report:
                raise DreamvidError(f"{candidate} is not a dreamvid report", "run dreamvid eval again")
            name = path.name if candidate != path else path.parent.name
            if candidate.parent.name == "eval" and candidate != path:
                name = candidate.parent.parent.name
            return name, report
    raise UsageError(f"no report found at {path}", f"run dreamvid eval {path} first")


def compare(paths: list, html: Path | None = None) -> str:
    """The headline metrics of several runs/reports side by side, as a terminal table; `html` also writes
    a combined page. Flagged numbers are marked with '!'."""
    from .report import HEADLINE, format_value, write_compare_html

    if not paths:
        raise UsageError("compare needs at least one run or report")
    loaded = [load_report(p) for p in paths]
    names = []
    for name, _ in loaded:
        base, k = name, 2
        while name in names:
            name = f"{base}#{k}"
            k += 1
        names.append(name)
    rows = []
    for key, label, _ in HEADLINE:
        cells = []
        for _, report in loaded:
            value = get(report["metrics"], key)
            flagged = any(f["metric"] == key for f in report.get("flags", []))
            cells.append(format_value(key, value) + (" !" if flagged else ""))
        if any(c.strip() not in ("-", "") for c in cells):
            rows.append([label] + cells)
    header = ["metric"] + names
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("! = outside the reference range calibrated on that run's own source")
    table = "\n".join(lines)
    if html is not None:
        write_compare_html(Path(html), list(zip(names, [r for _, r in loaded])))
    return table
