"""Lab screen (Spatial issue): how a trained default run should dream -- MaskGIT rounds, the cells' temperature
and the layout's -- scored by `dreamvid eval`'s own metrics on dreams from held-out and training starts.

    python lab/dream_settings.py RUN_DIR [RUN_DIR ...] --frames 2000
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share"), ("copying", "longest_run_frames")]


@torch.no_grad()
def dream(dreamer, frames, rounds, cell_t, layout_t, seed, start):
    rnn = dreamer.rnn
    generator = torch.Generator().manual_seed(seed)
    context = dreamer.context_before(start)
    _, state = rnn(context[None, :-1])
    z, shown = context[-1:], []
    for _ in range(frames):
        (params, _), state = rnn.step(z, state)
        g, center = rnn.motion.sample_with_center(params, layout_t, generator)
        layout = center + rnn.config.decode_spread * (g - center)
        z = rnn.renderer.fill(rnn.renderer.features(z, layout), rounds, cell_t, generator)
        shown.append(z)
    return np.concatenate([dreamer.decode(torch.cat(shown[i:i + 256])) for i in range(0, len(shown), 256)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", nargs="+", type=int, default=[4])
    parser.add_argument("--cell-temperatures", nargs="+", type=float, default=[0.7])
    parser.add_argument("--layout-temperatures", nargs="+", type=float, default=[0.7])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        cache = dreamer.cache
        train, held_out = cache.split("train"), cache.split("val")
        source = prepare_source(train, held_out, dreamer.fps)
        start = dreamer.random_frame_index(__import__("random").Random(args.seed))
        for rounds, cell_t, layout_t in itertools.product(args.rounds, args.cell_temperatures,
                                                          args.layout_temperatures):
            started = time.monotonic()
            frames = dream(dreamer, args.frames, rounds, cell_t, layout_t, args.seed, start)
            rate = args.frames / (time.monotonic() - started)
            metrics = score(frames, source=source)["metrics"]
            row = {"run": run.rstrip("/").split("/")[-2], "rounds": rounds, "cell_t": cell_t, "layout_t": layout_t,
                   "frames_per_s": round(rate), **{f"{g}.{k}": round(float(metrics[g][k]), 3) for g, k in KEYS}}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
