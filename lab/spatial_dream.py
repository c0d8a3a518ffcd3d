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


VARIANTS = {
    "base": dict(),
    "noise": dict(context_noise=0.5),
    "noise+own": dict(context_noise=0.5, own_samples=0.25),
    "wide": dict(width=64, hidden=96, context_noise=0.5),
    "small": dict(width=32, hidden=48, context_noise=0.3),
    "small-base": dict(width=32, hidden=48),
}


def make_model(variant, levels, side, sampling_steps):
    config = RNNConfig(kind="map", **{"hidden": 64, "width": 48, "sampling_steps": sampling_steps, "seq_len": 16,
                                      **VARIANTS[variant]})
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


def train_dreamer(variant, z_train, levels, steps, seed, batch=16, window=16, lr=2e-3, sampling_steps=4):
    batch = BATCH
    torch.manual_seed(seed)
    model = make_model(variant, levels, z_train.shape[-1], sampling_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 50) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)
        starts = torch.randint(len(z_train) - window - 1, (batch,), generator=generator)
        win = z_train[starts[:, None] + torch.arange(window + 1)]  # (B, T+1, C, H, W)
        loss = model.loss(win[:, :-1], win[:, 1:], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0:
            print(f"  step {step} loss {loss.item():.3f}", flush=True)
    return model.eval()


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
    args = parser.parse_args()
    global BATCH
    BATCH = args.batch
    kwargs, _, _ = V.VARIANTS[args.vae]
    vae = V.build(kwargs)
    vae.load_state_dict(load_file(V.OUT / f"{args.clip}-{args.vae}-s{args.vae_seed}.safetensors"))
    levels = vae.quantizer.levels.int().tolist()
    train, held_out, _ = load_clip(args.clip)
    z_all = encode_clip(vae, np.concatenate([train, held_out]))
    OUT.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        started = time.monotonic()
        model = train_dreamer(variant, z_all[:len(train)], levels, args.steps, args.seed,
                              sampling_steps=args.sampling_steps)
        train_s = time.monotonic() - started
        nll = heldout_nll(model, z_all, len(train))
        for temperature in args.temperatures:
            generator = torch.Generator().manual_seed(args.seed)
            start = len(train) + 10
            z, steps_per_s = rollout(model, z_all[start - 16:start + 1], args.frames, temperature, generator)
            dream = decode(vae, z)
            name = f"{args.clip}-{args.vae}-{variant}-t{temperature}-s{args.seed}"
            strip(dream, OUT / f"{name}.png")
            result = {"clip": args.clip, "vae": args.vae, "variant": variant, "seed": args.seed, "steps": args.steps,
                      "temperature": temperature, "train_s": round(train_s, 1),
                      "heldout_nll": round(nll, 3), "dream_steps_per_s": round(steps_per_s, 1),
                      **score_dream(dream, train, held_out)}
            print(json.dumps(result), flush=True)
            with open(OUT / "results.jsonl", "a") as log:
                log.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
