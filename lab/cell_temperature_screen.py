"""Screen: with the patch memory, can the renderer's cells be drawn hotter? (issue 19, stickiness)

Before the memory, a cell temperature of 1.0 instead of 0.7 unfroze River Raid and gave Enduro the source's flow,
but doubled River Raid's patch realism and made Enduro flicker (frame difference 2.1x; docs/results.md, "How it
dreams"). Part of both was the decoder's grain, which the memory now replaces on the games. The layout (g) stays
at the run's temperature; only the MaskGIT fill of the cells is drawn at `--cell`.

    python lab/cell_temperature_screen.py /tmp/res10-memory/*/run --cell 0.7 0.85 1.0 [--frames 2000]
"""
from __future__ import annotations

import argparse
import contextlib

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import MapRenderer

ORIGINAL = MapRenderer.fill
KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


@contextlib.contextmanager
def cell_temperature(value: float):
    def fill(self, features, rounds, temperature, uniforms=None):
        return ORIGINAL(self, features, rounds, value, uniforms)

    MapRenderer.fill = fill
    try:
        yield
    finally:
        MapRenderer.fill = ORIGINAL


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--cell", type=float, nargs="+", default=[0.7, 0.85, 1.0])
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        line = run
        for value in args.cell:
            with cell_temperature(value):
                frames = np.stack(list(dreamer.dream(frames=args.frames, seed=0)))
            metrics = score(frames, source=source)["metrics"]
            line += f" | T {value}: " + " ".join(f"{key[:6]} {metrics[group][key]:.3f}" for group, key in KEYS)
        print(line, flush=True)


if __name__ == "__main__":
    main()
