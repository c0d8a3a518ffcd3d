"""Lab screen (Spatial issue): does a renderer trained on pairs further apart follow g, so that dreams leave the
scene they start in (coverage) and stop freezing? The dream model alone is retrained on a run's frozen maps;
each variant dreams 2,000 frames scored by `dreamvid eval`'s metrics.

    python lab/renderer_gap.py RUN_DIR [RUN_DIR ...] --gaps 1 4 --seeds 0 1 --seconds 150
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time

import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models import build_rnn
from dreamvid.models import map_dream

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


def gap_loss(model, max_gap):
    """MapDreamer.loss with the renderer's pairs (t, t + k), k uniform in 1..max_gap, given g of t + k."""
    def loss(inputs, targets, generator=None):
        window = torch.cat([inputs[:, :1], targets], 1)
        batch, steps = window.shape[:2]
        summary_loss, g = model.summary.loss(window.flatten(0, 1), generator)
        g = g.view(batch, steps, -1)
        motion_loss = model.motion.loss(g[:, :-1], g[:, 1:], generator)
        gap = torch.randint(1, max_gap + 1, (batch, map_dream.PAIRS_PER_WINDOW), generator=generator)
        t = (torch.rand(batch, map_dream.PAIRS_PER_WINDOW, generator=generator) * (steps - gap)).long()
        rows = torch.arange(batch)[:, None]
        features = model.renderer.features(window[rows, t].flatten(0, 1), g[rows, t + gap].flatten(0, 1))
        render_loss = model.renderer.loss(features, window[rows, t + gap].flatten(0, 1), generator)
        return summary_loss / math.prod(window.shape[-2:]) + motion_loss / g.shape[-1] + render_loss
    return loss


def train(dreamer, max_gap, seconds, seed):
    torch.manual_seed(seed)
    config = dreamer.config.rnn
    model = build_rnn(config, dreamer.vae)
    model.loss = gap_loss(model, max_gap)
    maps = dreamer.latents["mu"]
    starts = [i for a, b in dreamer.latents["train"].tolist() for i in range(a, b - config.seq_len)]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    began, steps = time.monotonic(), 0
    while time.monotonic() - began < seconds:
        idx = torch.tensor([rng.choice(starts) for _ in range(16)])
        window = maps[idx[:, None] + torch.arange(config.seq_len + 1)]
        with torch.autocast("cpu", torch.bfloat16):
            loss = model.loss(window[:, :-1], window[:, 1:], generator)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        steps += 1
    return model.eval(), steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--gaps", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        for seed in args.seeds:
            for gap in args.gaps:
                dreamer.rnn, steps = train(dreamer, gap, args.seconds, seed)
                frames = dreamer.dream(frames=args.frames, seed=seed)
                import numpy as np
                metrics = score(np.stack(list(frames)), source=source)["metrics"]
                row = {"run": run.rstrip("/").split("/")[-2], "gap": gap, "seed": seed, "steps": steps,
                       **{f"{g}.{k}": round(float(metrics[g][k]), 3) for g, k in KEYS}}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
