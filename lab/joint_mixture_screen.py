"""Screen: the motion model draws g from one mixture component for all its numbers, not one per number
(issue 19, River Raid's freezing)

World Models' MDN picks a mixture component for each of g's 32 numbers on its own. Teacher-forced (the motion
model fed the source's g), its draws steer the renderer as well as the source's own g does (River Raid: after
300 steps 93-94% of cells agree with the source either way), so the renderer follows g. Free-running, the dream
stands still for hundreds of frames while the motion model's centre stays ~0.9 from the current g (~1.8 while
moving): at a choice between "stand still" and "scroll", each number picks its own side, and a g half of each is
a layout the renderer does not change for. Here the mixture is joint (Graves 2013, Bishop 1994): K components,
each a diagonal Gaussian over all of g, one weight each, one draw picks the component for the whole g. The
dream model alone is retrained on a run's maps by the product's stage for `--seconds` (harness:
`lab/delta_layout_screen.py`), then dreams `--frames` frames scored with `dreamvid eval`'s metrics.

    python lab/joint_mixture_screen.py /tmp/res10-own/riverraid--default--seed0/run ... [--control]
    JOINT_COMPONENTS=16 python lab/joint_mixture_screen.py ...       # 16 components instead of the run's 5

Screened 2026-12-07 (150 s, 2,000-frame dreams, control retrained alike), control -> joint (5 components) -> joint
(16): River Raid seed 0 frame difference 0.05 -> 0.13, frozen share 0.96 -> 0.90, coverage 0.13 -> 0.38 (realism
0.49 -> 0.65); seed 1 0.08 -> 0.23 -> 0.31, frozen 0.92 -> 0.69 -> 0.82, coverage 0.06 -> 0.38 -> 0.38 (realism
0.57 -> 1.07 -> 0.89); Enduro seed 0 realism 1.11 -> 0.72 -> 0.70, but frame difference 0.90 -> 0.61 -> 0.61, flow
0.78 -> 0.46 -> 0.47, frozen share 0.004 -> 0.20 -> 0.08, sharpness 0.57 -> 0.53 -> 0.51. With the layout drawn at
1.0 (lab/joint_temperature.py), River Raid frame difference 0.66 / 0.55 at realism 1.36 / 1.62, Enduro's flow 0.39.
Fed the g it drew (`joint_temperature.py --own-layout`): River Raid frame difference 0.17 / 0.18, frozen share
0.84 / 0.54; Enduro back to the control's motion (0.95, flow 0.83) and realism (1.22).
River Raid moves more, but not into its band, and Enduro stands still more: not kept.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import contextlib
import json
import math
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import dreamvid
from dreamvid.evaluation.scoring import prepare_source
from dreamvid.models.map_dream import MapDreamer
from dreamvid.models.vector import LOG_SQRT_2PI, LatentRNN
from delta_layout_screen import retrain, scored


class JointMDN(LatentRNN):
    """A mixture of K diagonal Gaussians over the whole latent, one weight per component."""

    def __init__(self, config, latent_shape):
        super().__init__(config, latent_shape, config.gaussians * (1 + 2 * math.prod(latent_shape)))

    def split_head(self, out):
        k, d = self.config.gaussians, self.z_dim
        logits, rest = out[..., :k], out[..., k:].view(*out.shape[:-1], k, d, 2)
        return logits, rest[..., 0], rest[..., 1].clamp(-7.0, 5.0)

    def nll(self, params, target):
        logits, mu, log_sigma = params
        z = target.unsqueeze(-2)
        log_normal = (-0.5 * ((z - mu) * torch.exp(-log_sigma)) ** 2 - log_sigma - LOG_SQRT_2PI).sum(-1)
        return -torch.logsumexp(F.log_softmax(logits, -1) + log_normal, -1)

    def mean(self, params):
        logits, mu, _ = params
        return (F.softmax(logits, -1).unsqueeze(-1) * mu).sum(-2)

    def sample_with_center(self, params, temperature, generator=None, noise=None):
        logits, mu, log_sigma = params
        uniform, normal = noise or self._noise(mu.shape[:-2] + mu.shape[-1:], generator, mu.device)
        cdf = F.softmax(logits / temperature, -1).cumsum(-1)
        choice = (cdf < uniform[..., :1]).sum(-1).clamp_(max=logits.shape[-1] - 1)      # one per latent
        index = choice[..., None, None].expand(*choice.shape, 1, mu.shape[-1])
        mu_k = mu.gather(-2, index).squeeze(-2)
        sigma_k = torch.exp(log_sigma.gather(-2, index).squeeze(-2)) * temperature ** 0.5
        return mu_k + sigma_k * normal, mu_k


ORIGINAL_INIT = MapDreamer.__init__


COMPONENTS = int(os.environ.get("JOINT_COMPONENTS", "0"))   # 0: the run's `gaussians`


def _init(self, config, latent_shape, levels):
    ORIGINAL_INIT(self, config, latent_shape, levels)
    motion_config = dataclasses.replace(config, gaussians=COMPONENTS) if COMPONENTS else config
    self.motion = JointMDN(motion_config, (config.global_size,))


@contextlib.contextmanager
def joint_mixture():
    MapDreamer.__init__ = _init
    try:
        yield
    finally:
        MapDreamer.__init__ = ORIGINAL_INIT


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7])
    parser.add_argument("--control", action="store_true", help="also retrain today's dream model")
    parser.add_argument("--keep", type=Path, help="keep the retrained runs under this folder")
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-joint-") as work:
            root = args.keep or Path(work)
            if args.control:
                retrain(run, root / f"{name}-control", args.seconds)
                print(json.dumps({"run": name, "variant": "control",
                                  **scored(root / f"{name}-control", args.frames, seed, source, args.temperatures)}),
                      flush=True)
            with joint_mixture():
                retrain(run, root / f"{name}-joint", args.seconds)
                row = scored(root / f"{name}-joint", args.frames, seed, source, args.temperatures)
            print(json.dumps({"run": name, "variant": "joint", **row}), flush=True)


if __name__ == "__main__":
    main()
