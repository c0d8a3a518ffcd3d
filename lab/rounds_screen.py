"""Screen: do more MaskGIT rounds draw whole road edges instead of fragments? (issue 19, dream sharpness)

The dreams' sharpness is 0.58-0.83 of the source's on the games while reconstructions keep 0.87-1.0. Each dream
frame is 0.68-0.84 as sharp as its nearest source frame (content explains the rest): on Enduro the road edges
come out in fragments with speckles beside them. With 2 rounds on a cosine schedule the first keeps the 75 most
confident of 256 cells (mostly copies) and the last draws the other 181 at once, each cell on its own: the
uncertain ones, the edges, last and together. More rounds draw them given each other. No retraining.

    python lab/rounds_screen.py /tmp/res10-own/*/run --arms 2 4 8 [--frames 2000]

Screened 2026-12-07 (the eight own-maps runs, 2,000-frame dreams), 2 -> 4 -> 8 rounds: Enduro sharpness 0.59 / 0.66
-> 0.58 / 0.66 -> 0.55 / 0.64; River Raid frozen share 0.76 / 0.91 -> 0.91 / 0.95 -> 0.94 / 0.95; frame difference
down on every clip (carphone 1.03 / 1.01 -> 0.84 / 0.84 -> 0.62 / 0.65, `bikes` 0.78 / 0.95 -> 0.63 / 0.72 ->
0.47 / 0.52) at 100-230 frames/s against 190-295. The fragments are not the last round's independent draws: the
renderer's distribution itself draws them. Not kept.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--arms", nargs="+", default=["2", "4", "8"])
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        line = run
        for arm in args.arms:
            dreamer.rnn.config.sampling_steps = int(arm)
            started = time.perf_counter()
            frames = np.stack(list(dreamer.dream(frames=args.frames, seed=0)))
            rate = args.frames / (time.perf_counter() - started)
            metrics = score(frames, source=source)["metrics"]
            line += f" | r{arm} ({rate:.0f}/s): " + " ".join(f"{key[:6]} {metrics[group][key]:.3f}" for group, key in KEYS)
        print(line, flush=True)


if __name__ == "__main__":
    main()
