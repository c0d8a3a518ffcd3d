"""Screen: decide whether a cell changes at the model's own odds, then what it becomes at a low temperature?
(issue 19, River Raid's freezing)

At cell temperature 1.0 River Raid unfreezes (frozen share 0.76 -> 0.00) but its realism goes 0.74 -> 3.99; at
0.7 it freezes. Cooling the whole categorical does two things at once: it makes "keep the code" likelier than the
model says (the copy is each cell's mode), and it makes a changing cell take a likely new code. Truncating the
tail (top-p, min-p) failed because the codes a cell changes to lie in its tail. Here the two are split, with the
same one uniform number per cell: u < p(keep)^(1/Tk) / norm keeps the cell (Tk = 1: the model's own odds of a
change), else the rest of u draws among the other codes at Tc. No retraining.

    python lab/change_sampler_screen.py /tmp/res10-own/*/run --arms 0.7 k1.0:c0.7 k0.85:c0.7 [--frames 2000]

Screened 2026-12-07 (the eight own-maps runs, 2,000-frame dreams), 0.7 -> k1.0:c0.7 -> k0.85:c0.7: River Raid
frozen share 0.76 / 0.91 -> 0.22 / 0.55 -> 0.36 / 0.71, frame difference 0.21 / 0.07 -> 0.40 / 0.21 -> 0.35 / 0.17,
realism 0.74 / 0.58 -> 1.74 / 0.94 -> 1.32 / 0.81; but Enduro's frame difference 0.92 / 0.91 -> 1.88 / 1.50 ->
1.74 / 1.46 (realism 1.20 / 1.18 -> 1.66 / 1.40), carphone 1.03 / 1.01 -> 1.90 / 1.74, `bikes` 0.78 / 0.95 ->
1.21 / 1.33. The model's own odds of a change make the moving clips flicker before River Raid moves. Not kept.
"""
from __future__ import annotations

import argparse
import contextlib
import math

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import MapRenderer

ORIGINAL = MapRenderer.fill
KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


def split_draw(log_p, current, keep_t, code_t, uniform):
    """Codes (B, H, W): keep `current` with p(keep) tempered by keep_t against the rest's mass, else a code
    other than current drawn at code_t from the remainder of the same uniform."""
    p = log_p.exp()
    p_keep = p.gather(1, current.unsqueeze(1))                       # (B, 1, H, W)
    keep_w, change_w = p_keep.clamp_min(1e-12) ** (1 / keep_t), (1 - p_keep).clamp_min(1e-12) ** (1 / keep_t)
    keep_share = keep_w / (keep_w + change_w)
    kept = uniform < keep_share
    rest = ((uniform - keep_share) / (1 - keep_share).clamp_min(1e-12)).clamp(0, 1 - 1e-6)
    others = (log_p / code_t).scatter(1, current.unsqueeze(1), float("-inf"))
    cdf = torch.softmax(others, 1).cumsum(1)
    drawn = (cdf < rest * cdf[:, -1:]).sum(1).clamp_(max=log_p.shape[1] - 1)
    return torch.where(kept[:, 0], current, drawn)


def make_fill(keep_t, code_t):
    def fill(self, features, rounds, temperature, uniforms=None):
        if uniforms is None:
            return ORIGINAL(self, features, rounds, temperature, uniforms)
        batch, _, height, width = features.shape
        cells = height * width
        known = features.new_zeros(batch, len(self.fsq.levels), height, width)
        hidden = features.new_ones(batch, 1, height, width)
        start = self.head_start(features)
        for index in range(rounds):
            log_p = self.log_probs(start, known, hidden)
            codes = split_draw(log_p, start[1], keep_t, code_t, uniforms[index])
            confidence = log_p.gather(1, codes.unsqueeze(1)).squeeze(1)
            still_hidden = math.floor(cells * math.cos(math.pi / 2 * (index + 1) / rounds))
            confidence = confidence.masked_fill(hidden[:, 0] == 0, float("inf")).flatten(1)
            keep = confidence.topk(cells - still_hidden, 1).indices
            now_hidden = torch.ones_like(confidence).scatter_(1, keep, 0.0).view_as(hidden)
            known = known + self.fsq.code_values(codes).to(known.dtype) * (hidden - now_hidden)
            hidden = now_hidden
        return known
    return fill


@contextlib.contextmanager
def cells(arm: str):
    if arm[0] != "k":
        yield
        return
    keep, code = arm.split(":")
    MapRenderer.fill = torch.no_grad()(make_fill(float(keep[1:]), float(code[1:])))
    try:
        yield
    finally:
        MapRenderer.fill = ORIGINAL


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--arms", nargs="+", default=["0.7", "k1.0:c0.7", "k0.85:c0.7"])
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
