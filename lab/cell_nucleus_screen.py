"""Screen: cells drawn hotter but only from their likely codes (nucleus / min-p sampling)? (issue 19, freezing)

At cell temperature 1.0 River Raid unfreezes (frame difference 0.21 -> 0.87 of the source's) but its patch
realism goes 0.74 -> 3.99: every cell now also draws from the long tail of its 125 codes, and those draws are
noise. At 0.7 the tail is gone, but so is the new content that enters at the river's top edge (docs/results.md).
Language models answer the same trade-off by truncating the tail, not cooling the whole distribution: top-p
(Holtzman et al. 2020, keep the likeliest codes holding p of the mass) or min-p (keep codes at least m times the
likeliest one). Here the renderer's cells are drawn at `T` from the truncated distribution; the layout stays at
the run's temperature. No retraining.

    python lab/cell_nucleus_screen.py /tmp/res10-own/*/run --arms 0.7 1.0:p0.9 1.0:m0.1 [--frames 2000]

Screened 2026-12-07 (the eight own-maps runs, 2,000-frame dreams), 0.7 -> 1.0 top-p 0.9 -> 1.0 min-p 0.1: River Raid
frame difference 0.21 / 0.07 -> 0.23 / 0.10 -> 0.11 / 0.02; Enduro 0.92 / 0.91 -> 1.50 / 1.33 -> 0.14 / 0.52,
carphone 1.03 / 1.01 -> 1.45 / 1.38 -> 0.41 / 0.41. The codes a cell changes to lie in the tail: keeping the
nucleus makes the moving clips flicker without unfreezing River Raid, cutting below min-p freezes every clip.
Not kept.
"""
from __future__ import annotations

import argparse
import contextlib

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import MapRenderer

ORIGINAL = MapRenderer._draw
KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


def truncated(log_p: torch.Tensor, top_p: float | None, min_p: float | None) -> torch.Tensor:
    """log_p (B, codes, H, W) with the codes outside the nucleus / below min-p set to -inf (the likeliest stays)."""
    if min_p is not None:
        return log_p.masked_fill(log_p < log_p.max(1, keepdim=True).values + float(np.log(min_p)), float("-inf"))
    ordered, order = log_p.sort(1, descending=True)
    mass_before = ordered.softmax(1).cumsum(1) - ordered.softmax(1)
    dropped = (mass_before > top_p).scatter(1, order, mass_before > top_p)
    return log_p.masked_fill(dropped, float("-inf"))


@contextlib.contextmanager
def cells(arm: str):
    temperature, _, cut = arm.partition(":")
    top_p = float(cut[1:]) if cut.startswith("p") else None
    min_p = float(cut[1:]) if cut.startswith("m") else None

    def draw(log_p, _temperature, uniform):
        if top_p is not None or min_p is not None:
            log_p = truncated(log_p, top_p, min_p)
        return ORIGINAL(log_p, float(temperature), uniform)

    MapRenderer._draw = staticmethod(draw)
    try:
        yield
    finally:
        MapRenderer._draw = staticmethod(ORIGINAL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--arms", nargs="+", default=["0.7", "1.0:p0.9", "1.0:m0.1"],
                        help="T, T:pP (top-p) or T:mM (min-p)")
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        line = run
        for arm in args.arms:
            with cells(arm):
                frames = np.stack(list(dreamer.dream(frames=args.frames, seed=0)))
            metrics = score(frames, source=source)["metrics"]
            line += f" | {arm}: " + " ".join(f"{key[:6]} {metrics[group][key]:.3f}" for group, key in KEYS)
        print(line, flush=True)


if __name__ == "__main__":
    main()
