"""Screen: each run's cell temperature calibrated so that its dream's maps change as often as its source's
(issue 19, River Raid's freezing)

The dream model's cells are drawn at 0.7. On River Raid the dream then drifts to a plain river: its maps hold 18
distinct codes against the source's 30 and 0.5-3% of cells change a step against the source's 13%, so a scroll
no longer shows (`lab/still_duration_screen.py`'s runs, seed 1). Hotter cells unfreeze River Raid but make
Enduro flicker (docs/results.md, "measured, not kept"), and Enduro's dream at 0.7 already changes as its source
does. Here no clip's value is chosen by hand: after training, short dreams at each of CANDIDATES, and the cell
temperature whose dream changes its cells at the rate closest to the source's maps is the run's (the layout stays
at the run's temperature). No retraining: the own-maps runs, 2,000-frame dreams scored with `dreamvid eval`'s
metrics against the same runs at 0.7.

    python lab/cell_temperature_calibration.py /tmp/res10-own/*/run

Screened 2026-12-07 and stopped after three runs: the rate is the wrong measure. The source's maps change 12-13%
of their cells a step on both games, a dream at 0.7 1-3% (Enduro seed 0: 3.1%), yet Enduro's dream at 0.7 moves
as its source does in pixels (frame difference 0.92): most of the source's code changes are a patch's grain. So
1.0 is picked everywhere: River Raid seed 0 / 1 frame difference 0.78 / 0.28 but realism 3.66 / 1.11, Enduro
seed 0 frame difference 2.29, realism 1.91 (it flickers). Not kept.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import MapDreamer

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
CANDIDATES = (0.7, 0.8, 0.9, 1.0)
CALIBRATION_FRAMES = 400
ORIGINAL_STEP = MapDreamer.dream_step


def changed_rate(maps: torch.Tensor) -> float:
    """Mean share of cells whose code changes from one map (T, C, H, W) to the next."""
    return float((maps[1:] != maps[:-1]).any(1).float().mean())


@contextlib.contextmanager
def cells_at(temperature: float):
    def step(self, z, state, layout_temperature, noise, decode_spread=1.0, feedback=None):
        uniform, normal, cells = noise
        (params, _), state = self.step(z, state)
        g, center = self.motion.sample_with_center(params, layout_temperature, noise=(uniform, normal))
        features = self.renderer.features(z, center + decode_spread * (g - center))
        z = self.renderer.fill(features, self.config.sampling_steps, temperature, cells)
        return z, z, state
    MapDreamer.dream_step = step
    try:
        yield
    finally:
        MapDreamer.dream_step = ORIGINAL_STEP


def calibrated(dreamer, seed: int) -> tuple[float, dict]:
    """The candidate whose dream's cells change at the rate closest to the source's training maps."""
    latents = dreamer.latents
    source = np.mean([changed_rate(latents["mu"][a:b]) for a, b in latents["train"].tolist()])
    rates = {}
    for temperature in CANDIDATES:
        with cells_at(temperature):
            rates[temperature] = changed_rate(dreamer.session(seed=seed + 1000).next_latents(CALIBRATION_FRAMES))
    best = min(CANDIDATES, key=lambda t: abs(np.log(rates[t] + 1e-4) - np.log(source + 1e-4)))
    return best, {"source": round(float(source), 4), **{str(t): round(r, 4) for t, r in rates.items()}}


def scored(dreamer, temperature: float, frames: int, seed: int, source) -> dict:
    with cells_at(temperature):
        dream = np.stack(list(dreamer.dream(frames=frames, seed=seed)))
    metrics = score(dream, source=source)["metrics"]
    return {f"{group[:4]}.{key[:6]}": round(float(metrics[group][key]), 3) for group, key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        best, rates = calibrated(dreamer, seed)
        print(json.dumps({"run": name, "rates": rates, "picked": best}), flush=True)
        if best != 0.7:
            print(json.dumps({"run": name, "variant": f"cells at {best}",
                              **scored(dreamer, best, args.frames, seed, source)}), flush=True)


if __name__ == "__main__":
    main()
