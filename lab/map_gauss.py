"""Lab screen (Spatial issue): FSQ levels are ordinal, so predict each cell's next values as a Gaussian (mean,
spread) instead of a categorical, sample, and round to the levels. One pass per frame, no MaskGIT rounds.

    python lab/map_gauss.py --clip enduro --vae shuf4-edge --steps 700 --temperatures 0.3 0.6 1.0
"""
from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import spatial_dream as D
import spatial_vae as V
from clips import load_clip
from dreamvid.models.map_dream import MapDreamer

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussMapDreamer(MapDreamer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        channels, width = len(self.fsq.levels), self.config.width
        self.head = nn.Sequential(nn.Conv2d(2 * width + channels, width, 1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, 1, 1), nn.SiLU(), nn.Conv2d(width, 2 * channels, 1))

    def gauss(self, features):
        channels = len(self.fsq.levels)
        out = self.head(features).float()
        current = features[:, -channels:]
        mean, log_std = out.chunk(2, 1)
        return current + mean, log_std.clamp(-6, 2)   # a residual on the map it follows

    def nll(self, params, target):
        lead = target.shape[:-3]
        features, target = params.flatten(0, len(lead) - 1), target.flatten(0, len(lead) - 1)
        mean, log_std = self.gauss(features)
        nll = 0.5 * ((target - mean) * torch.exp(-log_std)) ** 2 + log_std + LOG_SQRT_2PI
        return nll.flatten(1).sum(1).view(lead)

    def mean(self, params):
        return self.fsq.values(self.fsq.indices(self.gauss(params)[0]))

    @torch.no_grad()
    def fill(self, features, temperature, generator=None):
        mean, log_std = self.gauss(features)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return self.fsq.values(self.fsq.indices(mean + temperature * log_std.exp() * noise))

    def _masked_loss(self, features, targets, generator):
        return self.nll(features, targets).mean() / (targets.shape[-1] * targets.shape[-2])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", default="enduro")
    parser.add_argument("--vae", default="shuf4-edge")
    parser.add_argument("--variant", default="small-base")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--temperatures", nargs="+", type=float, default=[0.3, 0.6, 1.0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--start", type=int, default=1000)
    args = parser.parse_args()
    vae = V.build(V.VARIANTS[args.vae][0])
    vae.load_state_dict(load_file(V.OUT / f"{args.clip}-{args.vae}-s0.safetensors"))
    levels = vae.quantizer.levels.int().tolist()
    train, held_out, _ = load_clip(args.clip)
    z = D.encode_clip(vae, train)
    D.BATCH = 8
    original = D.make_model
    D.make_model = lambda *a: GaussMapDreamer(original(*a).config, (len(levels), 16, 16), tuple(levels))
    model = D.train_dreamer(args.variant, z, levels, args.steps, 0)
    for temperature in args.temperatures:
        generator = torch.Generator().manual_seed(0)
        dream, steps_per_s = D.rollout(model, z[args.start - 16:args.start + 1], args.frames, temperature, generator)
        frames = D.decode(vae, dream)
        name = f"{args.clip}-{args.vae}-gauss-{args.variant}-{args.steps}-t{temperature}"
        D.strip(frames, D.OUT / f"{name}.png")
        print(json.dumps({"model": "gauss", "temperature": temperature, "steps_per_s": round(steps_per_s, 1),
                          **D.score_dream(frames, train, held_out)}), flush=True)


if __name__ == "__main__":
    main()
