"""Dream-time follow-up of joint_mixture_screen.py: the retrained runs (kept with --keep) dreamed with the motion
model's draw at layout temperature TL and the renderer's cells at 0.7.

    python lab/joint_temperature.py /tmp/joint/riverraid--default--seed0-joint ... --layout 0.7 1.0 1.3
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import MapDreamer
from delta_layout_screen import KEYS
from joint_mixture_screen import joint_mixture

ORIGINAL_STEP = MapDreamer.dream_step


def with_layout_temperature(layout, own_layout=False):
    """dream_step with the layout drawn at `layout`; `own_layout`: the motion model is fed the g it drew, not the
    drawn map's (the state carries it)."""
    def dream_step(self, z, state, temperature, noise, decode_spread=1.0, feedback=None):
        uniform, normal, cells = noise
        if isinstance(state, dict):
            params, motion_state = self.motion.step(state["g"], state["motion"])
        else:
            (params, _), motion_state = self.step(z, state)
        g, center = self.motion.sample_with_center(params, layout, noise=(uniform, normal))
        features = self.renderer.features(z, center + decode_spread * (g - center))
        z = self.renderer.fill(features, self.config.sampling_steps, temperature, cells)
        return z, z, ({"motion": motion_state, "g": g} if own_layout else motion_state)
    return dream_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--layout", type=float, nargs="+", default=[0.7, 1.0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--plain", action="store_true", help="runs with today's motion model (controls)")
    parser.add_argument("--own-layout", action="store_true", help="feed the motion model the g it drew")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        if args.plain:
            dreamer = dreamvid.load(run, device="cpu")
        else:
            with joint_mixture():
                dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        row = {"run": run.name}
        for layout in args.layout:
            MapDreamer.dream_step = with_layout_temperature(layout, args.own_layout)
            try:
                frames = np.stack(list(dreamer.dream(frames=args.frames, seed=dreamer.config.train.seed)))
            finally:
                MapDreamer.dream_step = ORIGINAL_STEP
            metrics = score(frames, source=source)["metrics"]
            row.update({f"L{layout} {group[:4]}.{key[:6]}": round(float(metrics[group][key]), 3) for group, key in KEYS})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
