"""Screen: the motion model's mixture component drawn at its own odds (temperature 1 on the weights), the spread
within it at the run's 0.7 (issue 19, River Raid's freezing)

The freeze lives in the motion model's loop (docs/results.md). At a still scene the source restarts after 23-24
frames; a model that cannot count that far gives "move" a small weight at every step, and World Models'
temperature divides the weights' logits by 0.7 as well as narrowing each Gaussian: a 4% weight becomes ~1%, and a
dream's pause lasts ~100 frames instead of ~24. Here the weights are left at the model's odds and only the spread
is cooled. No retraining; the own-maps runs, 2,000-frame dreams.

    python lab/motion_odds_screen.py /tmp/res10-own/*/run [--frames 2000]

Screened 2026-12-07 (the eight own-maps runs), today -> odds at 1: River Raid frozen share 0.76 / 0.91 -> 0.72 / 0.93,
frame difference 0.21 / 0.07 -> 0.29 / 0.05; every other figure on every clip within a few hundredths (Enduro
frame difference 0.92 / 0.91 -> 0.93 / 0.95). The weights' temperature is not what holds River Raid still: not kept.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.vector import MDNRNN

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
ORIGINAL = MDNRNN.sample_with_center


def odds_at_one(self, params, temperature, generator=None, noise=None):
    logits, mu, log_sigma = params
    uniform, normal = noise or self._noise(mu.shape[:-1], generator, mu.device)
    cdf = F.softmax(logits, -1).cumsum(-1)
    choice = (cdf < uniform.unsqueeze(-1)).sum(-1, keepdim=True).clamp_(max=logits.shape[-1] - 1)
    mu_k = mu.gather(-1, choice).squeeze(-1)
    sigma_k = torch.exp(log_sigma.gather(-1, choice).squeeze(-1)) * temperature ** 0.5
    return mu_k + sigma_k * normal, mu_k


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        line = run
        for arm, sampler in (("today", ORIGINAL), ("odds at 1", odds_at_one)):
            MDNRNN.sample_with_center = sampler
            try:
                frames = np.stack(list(dreamer.dream(frames=args.frames, seed=0)))
            finally:
                MDNRNN.sample_with_center = ORIGINAL
            metrics = score(frames, source=source)["metrics"]
            line += f" | {arm}: " + " ".join(f"{group[:4]}.{key[:6]} {metrics[group][key]:.3f}" for group, key in KEYS)
        print(line, flush=True)


if __name__ == "__main__":
    main()
