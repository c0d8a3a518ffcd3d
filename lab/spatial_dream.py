"""Lab screen (Spatial issue): a convolutional recurrent dream model over FSQ latent maps, on frozen latents.

Loads a spatial auto-encoder saved by spatial_vae.py, encodes the clip, trains a ConvGRU dream model with
MaskGIT-style sampling of the next map for a fixed number of steps, and scores a rollout against the source.

    python lab/spatial_dream.py --clip enduro --vae fsq4 --variants base --steps 400
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from dreamvid.config import RNNConfig
from dreamvid.models.map_dream import MapDreamer

import spatial_vae as V
from clips import load_clip

OUT = Path("/tmp/dreamvid-lab/dream")
BATCH = 16
DREAM_LEVEL = 0.0


VARIANTS = {
    "base": dict(),
    "noise": dict(context_noise=0.5),
    "noise+own": dict(context_noise=0.5, own_samples=0.25),
    "wide": dict(width=64, hidden=96, context_noise=0.5),
    "small": dict(width=32, hidden=48, context_noise=0.3),
    "small-base": dict(width=32, hidden=48),
    "gate": dict(gate=True),
    "gate-noise": dict(gate=True, context_noise=0.3),
    "gate-noise-own": dict(gate=True, context_noise=0.3, own_samples=0.2),
    "bonus4": dict(gate=False, bonus=4.0),
    "flip": dict(gate="flip", context_noise=0.3),
}


class GatedMapDreamer(MapDreamer):
    """Lever: the head also gives each cell and channel its own bonus for keeping its current level (a copy
    gate), on top of the shared learned bonus, initialised at `bonus`."""

    def __init__(self, config, latent_shape, levels, bonus=4.0):
        super().__init__(config, latent_shape, levels)
        last = self.head[-1]
        self.head[-1] = nn.Conv2d(last.in_channels, last.out_channels + len(levels), 1)
        self.copy_bonus.data.fill_(bonus)

    def logits(self, features, known, hidden):
        channels = len(self.fsq.levels)
        out = self.head(torch.cat([features, known * (1 - hidden), hidden], 1)).float()
        logits, bonus = out[:, :-channels], out[:, -channels:]
        logits = logits.view(len(out), channels, -1, *out.shape[2:])
        current = self.fsq.indices(features[:, -channels:])
        keep = F.one_hot(current, logits.shape[2]).permute(0, 1, 4, 2, 3)
        logits = logits + (self.copy_bonus + bonus).unsqueeze(2) * keep
        return F.log_softmax(logits.masked_fill(self.unused_levels, -math.inf), 2)


class FlipGatedMapDreamer(GatedMapDreamer):
    """Lever: the context is corrupted the way sampling corrupts it, by code flips: a random share (up to
    `context_noise`) of cells take random levels, that share given as the noise level; dreaming tells the model
    its inputs carry `dream_level`."""

    dream_level = 0.0

    def corrupt(self, inputs, level, generator):
        flip = torch.rand((*inputs.shape[:2], 1, *inputs.shape[3:]), generator=generator) < level.view(-1, 1, 1, 1, 1)
        levels = self.fsq._levels.view(1, 1, -1, 1, 1)
        random = (torch.rand(inputs.shape, generator=generator) * levels).floor().clamp_max(levels - 1)
        random = (random - levels // 2) / (levels // 2)
        return torch.where(flip, random, inputs)

    def loss(self, inputs, targets, generator=None):
        batch, steps = inputs.shape[:2]
        level = torch.rand(batch, generator=generator) * self.config.context_noise
        noisy = self.corrupt(inputs, level, generator)
        state, features = None, []
        for t in range(steps):
            f, state = self.core(noisy[:, t], level, state)
            features.append(f)
        return self._masked_loss(torch.stack(features, 1).flatten(0, 1), targets.flatten(0, 1), generator)

    def step(self, z, state=None):
        return self.core(z, z.new_full((len(z),), self.dream_level), state)


def make_model(variant, levels, side, sampling_steps):
    fields = dict(VARIANTS[variant])
    gated, bonus = fields.pop("gate", False), fields.pop("bonus", 4.0)
    config = RNNConfig(kind="map", **{"hidden": 48, "width": 32, "sampling_steps": sampling_steps, "seq_len": 16,
                                      **fields})
    if gated == "flip":
        model = FlipGatedMapDreamer(config, (len(levels), side, side), tuple(levels), bonus)
        model.dream_level = DREAM_LEVEL
        return model
    if gated:
        return GatedMapDreamer(config, (len(levels), side, side), tuple(levels), bonus)
    return MapDreamer(config, (len(levels), side, side), tuple(levels))


def encode_clip(vae, frames):
    vae.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(frames), 256):
            out.append(vae.encode(V.to_tensor(frames[start:start + 256]))[0])
    return torch.cat(out)


def decode(vae, z):
    with torch.no_grad():
        return torch.cat([vae.decoder(z[i:i + 256]).clamp(0, 1) for i in range(0, len(z), 256)]).mul(255).round() \
            .byte().permute(0, 2, 3, 1).numpy()


def train_dreamer(variant, z_train, levels, steps, seed, batch=16, window=16, lr=2e-3, sampling_steps=4,
                  seconds=None, bf16=False):
    batch = BATCH
    torch.manual_seed(seed)
    model = make_model(variant, levels, z_train.shape[-1], sampling_steps)
    if variant == "bonus4":
        model.copy_bonus.data.fill_(4.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    started, step = time.monotonic(), 0
    while (step < steps) if seconds is None else (time.monotonic() - started < seconds):
        step += 1
        starts = torch.randint(len(z_train) - window - 1, (batch,), generator=generator)
        win = z_train[starts[:, None] + torch.arange(window + 1)]  # (B, T+1, C, H, W)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = model.loss(win[:, :-1], win[:, 1:], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0:
            print(f"  step {step} loss {loss.item():.3f}", flush=True)
    model.trained_steps = step
    return model.eval()


def copy_nll(z_all, first_val, levels):
    """Per-cell NLL of the best constant-rate copy model on the held-out maps: keep each channel's level with the
    clip's own keep rate, else any other level uniformly."""
    indices = ((z_all * (torch.tensor(levels)[None, :, None, None] // 2)).round()).long()
    same = (indices[1:] == indices[:-1]).float()
    total = 0.0
    for c, n in enumerate(levels):
        keep = same[:first_val - 1, c].mean().clamp(1e-4, 1 - 1e-4)
        val = same[first_val - 1:, c]
        total += -(val * keep.log() + (1 - val) * ((1 - keep) / (n - 1)).log()).mean().item()
    return total


@torch.no_grad()
def heldout_nll(model, z_all, first_val):
    """Per-cell NLL (nats, summed over channels) of each held-out map with every cell hidden."""
    context = z_all[max(0, first_val - 32):]
    nll = model.sequence_nll(context, first_val - max(0, first_val - 32))
    return nll.mean().item() / (z_all.shape[-1] * z_all.shape[-2])


@torch.no_grad()
def rollout(model, z_context, frames, temperature, generator):
    _, state = model(z_context[None, :-1])
    started = time.monotonic()
    shown, _, _ = model.rollout(z_context[-1:], state, frames, temperature, generator)
    return shown[0], frames / (time.monotonic() - started)


def laplacian_var(frames):
    return float(np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames]))


def thumb(frames, side=16):
    return torch.from_numpy(np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
                                      for f in frames])).float().flatten(1)


def nn_distance(query, bank):
    return torch.cdist(query, bank).min(1)[0].mean().item()


def score_dream(dream, train, held_out):
    diffs = lambda f: np.abs(np.diff(f.astype(np.float32), axis=0)).mean()
    bank = thumb(train[::2])
    return {"sharpness": round(laplacian_var(dream) / laplacian_var(train[-300:]), 3),
            "frame_diff": round(float(diffs(dream) / diffs(train)), 3),
            "nn_ratio": round(nn_distance(thumb(dream), bank) / nn_distance(thumb(held_out), bank), 3),
            "still_share": round(float((np.abs(np.diff(dream.astype(np.float32), axis=0)).mean((1, 2, 3)) < 0.5)
                                       .mean()), 3)}


def strip(frames, path, count=12):
    idx = np.linspace(0, len(frames) - 1, count).astype(int)
    image = cv2.resize(np.concatenate(list(frames[idx]), 1), None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", default="enduro")
    parser.add_argument("--vae", default="fsq4")
    parser.add_argument("--vae-seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--temperatures", nargs="+", type=float, default=[1.0])
    parser.add_argument("--sampling-steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--dream-level", type=float, default=0.0)
    args = parser.parse_args()
    global BATCH, DREAM_LEVEL
    BATCH, DREAM_LEVEL = args.batch, args.dream_level
    kwargs, _, _ = V.VARIANTS[args.vae]
    vae = V.build(kwargs)
    vae.load_state_dict(load_file(V.OUT / f"{args.clip}-{args.vae}-s{args.vae_seed}.safetensors"))
    levels = vae.quantizer.levels.int().tolist()
    train, held_out, _ = load_clip(args.clip)
    z_all = encode_clip(vae, np.concatenate([train, held_out]))
    OUT.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"clip": args.clip, "copy_nll": round(copy_nll(z_all, len(train), levels), 3)}), flush=True)
    for variant in args.variants:
        started = time.monotonic()
        model = train_dreamer(variant, z_all[:len(train)], levels, args.steps, args.seed,
                              sampling_steps=args.sampling_steps, seconds=args.seconds, bf16=args.bf16)
        train_s = time.monotonic() - started
        nll = heldout_nll(model, z_all, len(train))
        for temperature in args.temperatures:
            generator = torch.Generator().manual_seed(args.seed)
            start = len(train) + 10
            z, steps_per_s = rollout(model, z_all[start - 16:start + 1], args.frames, temperature, generator)
            dream = decode(vae, z)
            name = f"{args.clip}-{args.vae}-{variant}-t{temperature}-l{args.dream_level}-s{args.seed}"
            strip(dream, OUT / f"{name}.png")
            result = {"clip": args.clip, "vae": args.vae, "variant": variant, "seed": args.seed, "steps": model.trained_steps,
                      "temperature": temperature, "dream_level": args.dream_level, "train_s": round(train_s, 1),
                      "heldout_nll": round(nll, 3), "dream_steps_per_s": round(steps_per_s, 1),
                      **score_dream(dream, train, held_out)}
            print(json.dumps(result), flush=True)
            with open(OUT / "results.jsonl", "a") as log:
                log.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
