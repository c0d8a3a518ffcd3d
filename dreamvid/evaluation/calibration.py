"""Calibration: the reference dreams scored like a dream, and the reference range and flags of each headline number.

`calibrate` scores each reference dream (`metrics.reference_dream`) with `scoring.score` against the same source;
`flag_ranges` turns those scores into a range per headline number (FLAG_RULES, docs/metrics.md "Reference ranges
and flags"); `flags_for` lists the numbers of a metrics dict that fall outside it.
"""
from __future__ import annotations

import math

import numpy as np

from . import metrics as M
from .scoring import DIVERSITY_DREAMS, DIVERSITY_HORIZON, get, score

STRIP_FRAMES = 8  # frames of each reference kept for the report's strips

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


def calibrate(source: M.Source, n_frames: int, *, seed: int = 0, progress=None) -> dict:
    """Score each reference dream (`n_frames` long) with `score` against `source`: {name: score output}, each
    with a "strip" of frames for the report."""
    results = {}
    start = int(np.random.default_rng(seed + 7).integers(len(source.frames)))
    for name in M.REFERENCE_NAMES:
        dist = source.distances if name == "texture" else None
        frames = M.reference_dream(name, source.train, n_frames, seed, fps=source.fps, dist=dist)
        variants = [M.reference_dream(name, source.train, DIVERSITY_HORIZON, seed + 1 + k, fps=source.fps,
                                      start=start, dist=dist) for k in range(DIVERSITY_DREAMS)]
        results[name] = score(frames, source=source, diversity_dreams=variants, seed=seed)
        results[name]["strip"] = frames[M.evenly(len(frames), STRIP_FRAMES)]
        del frames
        if progress is not None:
            progress(name)
    return results


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


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
        bads = [cal.get(name) for name in bad_refs if cal.get(name) is not None]
        bound = _bound(side, good_value, bads, fallback, margin)
        low, high = ranges.get(key, [None, None])
        ranges[key] = [low, bound] if side == "high" else [bound, high]
    return ranges


def _bound(side: str, good: float | None, bads: list[float], fallback: float | None, margin: float) -> float | None:
    """Halfway from `good` to the nearest of `bads` that shows the defect (beyond the margin), at least the margin
    away from `good`; `fallback` when none shows it or there is no good anchor."""
    if good is None:
        return fallback
    if side == "high":
        bads = [b for b in bads if b > good + margin]
        bound = good + (min(bads) - good) / 2 if bads else fallback
        return None if bound is None else max(bound, good + margin)
    bads = [b for b in bads if b < good - margin]
    bound = good - (good - max(bads)) / 2 if bads else fallback
    return None if bound is None else min(bound, good - margin)


def flags_for(metrics: dict, ranges: dict) -> list[dict]:
    """The headline numbers outside their reference range."""
    out = []
    for key, (low, high) in ranges.items():
        value = _num(get(metrics, key))
        if value is None:
            continue
        side = "low" if low is not None and value < low else "high" if high is not None and value > high else None
        if side is not None:
            out.append({"metric": key, "value": value, "range": [low, high], "side": side})
    return out
