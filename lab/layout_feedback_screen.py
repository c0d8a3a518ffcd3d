"""Screen: should the motion model be fed the layout it drew, not the drawn map's? (issue 19, coverage, stickiness)

Today each dream step summarises the map the renderer drew and feeds that g to the motion model. The renderer lags
g (its maps' g moves 0.3-0.5 a step, the motion model's 1.1-1.4), so every step pulls the motion model back to
where the map already is, and no dream leaves its scene (coverage 0.06-0.44). Fed the g it drew itself (share
`--own` of it, the rest the drawn map's), the motion model wanders as World Models' dream does, and the renderer
follows as far as it can. No retraining: the trained runs dream with it.

    python lab/layout_feedback_screen.py /tmp/res10-own/*/run --own 0 0.5 1 1:1.0 [--frames 2000]

A share of -1 ("still") feeds its own g only on steps whose drawn map equals the one before (a map that did not
change carries no news: dead reckoning). `share:T` also draws the layout at temperature T (the cells stay at the run's).

Screened 2026-12-07 (the eight own-maps runs, 2,000-frame dreams, dream seed 0), share 0 -> 1: coverage up in 6 of 8
(River Raid 0.38 / 0.06 -> 0.88 / 0.81, `bikes` 0.31 / 0.38 -> 0.69 / 0.56, Enduro 0.13 / 0.06 -> 0.25 / 0.25) and
River Raid's frozen share 0.76 / 0.91 -> 0.28 / 0.57; but Enduro's dream, having left the night for the fog, stands
still there (frame diff 0.92 / 0.92 -> 0.50 / 0.67, flow 0.85 / 0.77 -> 0.34 / 0.49, frozen share 0.00 -> 0.34 / 0.10)
and River Raid's realism 0.74 -> 1.72 (seed 0). Counted on the figures this screen scores: 7 fewer met. Shares 0.5
and 0.75 move little; a layout temperature of 0.85 or 1.0 with share 1 does not stop Enduro standing still (frozen
share 0.36); "still" leaves River Raid frozen (0.85 / 0.87). Not kept.
"""
from __future__ import annotations

import argparse
import contextlib

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import MapDreamer

ORIGINAL = MapDreamer.dream_step
KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


@contextlib.contextmanager
def layout_feedback(own: float, layout_temperature: float | None = None):
    drawn = {}

    def dream_step(self, z, state, temperature, noise, decode_spread=1.0, feedback=None):
        uniform, normal, cells = noise
        g_in = self.layout(z)
        if "g" in drawn and drawn["g"].shape == g_in.shape:
            share = own
            if own < 0:   # "still": its own g only where the drawn map did not change
                share = (drawn["z"] == z).flatten(1).all(1, keepdim=True).to(g_in.dtype)
            g_in = share * drawn["g"] + (1 - share) * g_in
        params, state = self.motion.step(g_in, state)
        g, center = self.motion.sample_with_center(params, layout_temperature or temperature, noise=(uniform, normal))
        drawn["g"], drawn["z"] = g, z
        features = self.renderer.features(z, center + decode_spread * (g - center))
        z = self.renderer.fill(features, self.config.sampling_steps, temperature, cells)
        if feedback is not None:
            z = feedback(z)
        return z, z, state

    MapDreamer.dream_step = dream_step
    try:
        yield
    finally:
        MapDreamer.dream_step = ORIGINAL


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--own", nargs="+", default=["0", "0.5", "1"], help="share[:layout temperature] ...")
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        line = run
        for value in args.own:
            share, _, layout_t = value.partition(":")
            with layout_feedback(float(share), float(layout_t) if layout_t else None):
                frames = np.stack(list(dreamer.dream(frames=args.frames, seed=0)))
            metrics = score(frames, source=source)["metrics"]
            line += f" | own {value}: " + " ".join(f"{key[:6]} {metrics[group][key]:.3f}" for group, key in KEYS)
        print(line, flush=True)


if __name__ == "__main__":
    main()
