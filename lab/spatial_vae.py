"""Lab screen (Spatial issue): which spatial auto-encoder keeps thin structures and small sprites?

Trains each variant alone for a fixed number of steps on each clip and scores its held-out reconstructions:
PSNR, sharpness (variance of the Laplacian over the originals'), worst-pixel error, and a strip PNG.

    python lab/spatial_vae.py --clips enduro riverraid --variants fsq4 gauss4 --steps 1500 --seed 0
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
from safetensors.torch import save_file
from torch import nn

from clips import CLIPS, load_clip

cv2.setNumThreads(1)
OUT = Path("/tmp/dreamvid-lab/vae")
BF16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text()  # emulated bf16 is ~100x slower than fp32


class ResBlock(nn.Module):
    def __init__(self, channels: int, norm: bool = False):
        super().__init__()
        layers = [nn.GroupNorm(8, channels)] if norm else []
        layers += [nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1)]
        layers += [nn.GroupNorm(8, channels)] if norm else []
        layers += [nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


class FSQ(nn.Module):
    """Finite scalar quantisation (Mentzer et al. 2023): each channel bounded, then rounded to `levels` values."""

    def __init__(self, levels: list[int]):
        super().__init__()
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float32), persistent=False)

    def forward(self, z):
        levels = self.levels.view(1, -1, 1, 1)
        half = (levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        bounded = torch.tanh(z.float() + shift) * half - offset
        self.gap = (bounded - bounded.round().detach()).pow(2).mean()   # distance from the level centers
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (levels // 2)  # in [-1, 1]


class SpatialAE(nn.Module):
    """64 px -> a (latent, 16, 16) map and back: two k4 s2 stages, residual blocks at 16x16 and 32x32."""

    def __init__(self, latent: int, widths=(32, 64), enc_blocks=(0, 1), dec_blocks=(1, 2), quantizer=None,
                 gauss=False, full_res=16, norm=False):
        super().__init__()
        w1, w2 = widths
        enc = [nn.Conv2d(3, w1, 4, 2, 1)] + [ResBlock(w1, norm) for _ in range(enc_blocks[0])]
        enc += [nn.SiLU(), nn.Conv2d(w1, w2, 4, 2, 1)] + [ResBlock(w2, norm) for _ in range(enc_blocks[1])]
        enc += [nn.SiLU(), nn.Conv2d(w2, latent * (2 if gauss else 1), 1)]
        self.encoder = nn.Sequential(*enc)
        self.gauss = gauss
        self.quantizer = quantizer
        dec = [nn.Conv2d(latent, w2, 3, 1, 1)] + [ResBlock(w2, norm) for _ in range(dec_blocks[1])]
        dec += [nn.SiLU(), nn.ConvTranspose2d(w2, w1, 4, 2, 1)] + [ResBlock(w1, norm) for _ in range(dec_blocks[0])]
        dec += [nn.SiLU(), nn.ConvTranspose2d(w1, full_res, 4, 2, 1), nn.SiLU(), nn.Conv2d(full_res, 3, 3, 1, 1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x, generator=None):
        h = self.encoder(x).float()
        if self.gauss:
            mu, logvar = h.chunk(2, 1)
            logvar = logvar.clamp(-10, 5)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator) if self.training else mu
            return z, (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).flatten(1).sum(1).mean()
        z = self.quantizer(h) if self.quantizer is not None else h
        return z, h.new_zeros(())

    def forward(self, x, generator=None):
        if self.training and getattr(self, "input_noise", 0):
            x = x + self.input_noise * torch.randn(x.shape, generator=generator).to(x.dtype)
        z, kl = self.encode(x, generator)
        if self.training and getattr(self, "corrupt", 0):
            z = corrupt_cells(z, self.quantizer.levels, self.corrupt, generator)
        out = self.decoder(z)
        if getattr(self, "dc", None) is not None:   # each cell's flat colour, straight from its code
            out = out + F.interpolate(self.dc(z), scale_factor=4, mode="nearest")
        return out, kl


def corrupt_cells(z, levels, most, generator):
    """Lever (denoising decoder): in half of the maps, a random share (up to `most`) of cells replaced, half by a
    random code and half by the code of another cell of the same map (mostly background: an erasure)."""
    batch, channels, height, width = z.shape
    rate = torch.rand(batch, 1, 1, 1, generator=generator) * most * (torch.rand(batch, 1, 1, 1, generator=generator) < 0.5)
    hit = torch.rand(batch, 1, height, width, generator=generator) < rate
    half = (levels // 2).view(1, -1, 1, 1)
    random = (torch.floor(torch.rand(z.shape, generator=generator) * levels.view(1, -1, 1, 1)) - half) / half
    flat = z.flatten(2)
    other = flat.gather(2, torch.randint(height * width, (batch, 1, height * width), generator=generator)
                        .expand(-1, channels, -1)).view_as(z)
    use_random = torch.rand(batch, 1, height, width, generator=generator) < 0.5
    replacement = torch.where(use_random, random.to(z.dtype), other)
    return torch.where(hit, replacement, z)


class ShuffleAE(SpatialAE):
    """All work at the 16x16 cell grid: pixels in by PixelUnshuffle(4), out by PixelShuffle(4) (ESPCN-style)."""

    def __init__(self, latent: int, width=64, enc_blocks=1, dec_blocks=2, quantizer=None, gauss=False, local=False,
                 dc=False):
        nn.Module.__init__(self)
        self.dc = nn.Conv2d(latent, 3, 1) if dc else None
        self.gauss, self.quantizer = gauss, quantizer
        if local:   # each cell's code from its own 4x4 pixels only: a per-cell MLP
            self.encoder = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(48, width, 1), nn.SiLU(),
                                         nn.Conv2d(width, width, 1), nn.SiLU(), nn.Conv2d(width, width, 1), nn.SiLU(),
                                         nn.Conv2d(width, latent, 1))
        else:
            self.encoder = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(48, width, 3, 1, 1),
                                         *[ResBlock(width) for _ in range(enc_blocks)], nn.SiLU(),
                                         nn.Conv2d(width, latent * (2 if gauss else 1), 1))
        self.decoder = nn.Sequential(nn.Conv2d(latent, width, 3, 1, 1), *[ResBlock(width) for _ in range(dec_blocks)],
                                     nn.SiLU(), nn.Conv2d(width, 48, 3, 1, 1), nn.PixelShuffle(4))


FSQ4 = [8, 5, 5, 5]
VARIANTS = {
    # name: (model kwargs, loss weights {l1, l2, worst}, kl weight)
    "fsq4": (dict(latent=4, quantizer=FSQ(FSQ4)), {}, 0),
    "fsq6": (dict(latent=6, quantizer=FSQ([8, 8, 8, 5, 5, 5])), {}, 0),
    "fsq4-norm": (dict(latent=4, quantizer=FSQ(FSQ4), norm=True), {}, 0),
    "fsq4-deep": (dict(latent=4, quantizer=FSQ(FSQ4), dec_blocks=(2, 3)), {}, 0),
    "fsq4-wide": (dict(latent=4, quantizer=FSQ(FSQ4), widths=(48, 96)), {}, 0),
    "fsq4-l2only": (dict(latent=4, quantizer=FSQ(FSQ4)), {"l1": 0, "worst": 0}, 0),
    "gauss4": (dict(latent=4, gauss=True), {}, 1e-3),
    "gauss4-kl01": (dict(latent=4, gauss=True), {}, 1e-2),
    "ae4": (dict(latent=4), {}, 0),
    "shuf4": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle"), {}, 0),
    "shuf4-w96": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle", width=96), {}, 0),
    "shuf4-deep": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle", dec_blocks=4), {}, 0),
    "shuf6": (dict(latent=6, quantizer=FSQ([8, 8, 8, 5, 5, 5]), arch="shuffle"), {}, 0),
    "shuf4-topk": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle"), {"topk": 0.1}, 0),
    "shuf4-topk1": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle"), {"topk": 1.0}, 0),
    "shuf4-edge": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle"), {"edge": 4.0}, 0),
    "shuf4-edge1": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle"), {"edge": 1.0}, 0),
    "shuf4-grad": (dict(latent=4, quantizer=FSQ(FSQ4), arch="shuffle"), {"grad": 1.0}, 0),
    "shuf4-edge-l5333": (dict(latent=4, quantizer=FSQ([5, 3, 3, 3]), arch="shuffle"), {"edge": 4.0}, 0),
    "shuf3-edge-l555": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle"), {"edge": 4.0}, 0),
    "local3-l555": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True), {"edge": 4.0}, 0),
    "local3-l555-e0": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True), {}, 0),
    "local3-l555-e1": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True), {"edge": 1.0}, 0),
    "local3-l555-c": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True), {"edge": 4.0}, 0),
    "local3-l555-n": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True), {"edge": 4.0}, 0),
    "local3-l555-dc": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True, dc=True), {"edge": 4.0}, 0),
    "local3-l555-l1": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True), {"edge": 4.0, "l1": 1.0}, 0),
    "local3-l555-dn": (dict(latent=3, quantizer=FSQ([5, 5, 5]), arch="shuffle", local=True), {"edge": 4.0}, 0),
    "local4-l5555": (dict(latent=4, quantizer=FSQ([5, 5, 5, 5]), arch="shuffle", local=True), {"edge": 4.0}, 0),
    "shuf4-gauss": (dict(latent=4, gauss=True, arch="shuffle"), {}, 1e-3),
}


def build(kwargs):
    kwargs = dict(kwargs)
    return (ShuffleAE if kwargs.pop("arch", "ladder") == "shuffle" else SpatialAE)(**kwargs)
LOSS = {"l1": 0.1, "l2": 1.0, "worst": 0.01, "topk": 0.0, "edge": 0.0, "grad": 0.0}
TOPK_SHARE = 0.02
CLIP = 0.0
CENTER_WEIGHT = 0.05


def loss_fn(recon, target, weights):
    weights = {**LOSS, **weights}
    delta = recon.float() - target
    pixel_weight = 1.0
    if weights["edge"]:
        contrast = (target - F.avg_pool2d(target, 3, 1, 1, count_include_pad=False)).abs().sum(1, keepdim=True)
        pixel_weight = 1 + weights["edge"] * contrast / contrast.mean().clamp_min(1e-3)
    loss = weights["l2"] * (pixel_weight * delta.pow(2)).mean() + weights["l1"] * (pixel_weight * delta.abs()).mean()
    squared = delta.pow(2).flatten(1)
    if weights["worst"]:
        loss = loss + weights["worst"] * squared.max(1)[0].mean()
    if weights["topk"]:
        k = max(1, int(squared.shape[1] * TOPK_SHARE))
        loss = loss + weights["topk"] * squared.topk(k, 1)[0].mean()
    if weights["grad"]:
        for dim in (-1, -2):
            loss = loss + weights["grad"] * (recon.float().diff(dim=dim) - target.diff(dim=dim)).abs().mean()
    return loss


def to_tensor(frames):
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)


def laplacian_var(frames):
    return np.array([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames])


@torch.no_grad()
def reconstruct(model, frames):
    model.eval()
    out = []
    for start in range(0, len(frames), 128):
        with torch.autocast("cpu", torch.bfloat16, enabled=BF16):
            recon, _ = model(to_tensor(frames[start:start + 128]).contiguous(memory_format=torch.channels_last))
        out.append(recon.float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy())
    model.train()
    return np.concatenate(out)


def realism(recon, original, train):
    """Patch realism as `dreamvid eval` scores it: patch distance to the training bank over the held-out frames'."""
    from dreamvid.evaluation.metrics import patch_bank, patch_distances
    bank = patch_bank(train)
    return round(float(patch_distances(recon, bank)[1].mean() / patch_distances(original, bank)[1].mean()), 3)


def score(original, recon):
    err = (original.astype(np.float32) - recon.astype(np.float32)) / 255
    mse = (err ** 2).mean()
    return {"psnr": round(float(10 * math.log10(1 / max(mse, 1e-10))), 2),
            "sharpness": round(float(laplacian_var(recon).mean() / max(laplacian_var(original).mean(), 1e-9)), 3),
            "worst_px": round(float(np.abs(err).reshape(len(err), -1).max(1).mean()), 3)}


def strip(original, recon, path):
    idx = np.linspace(0, len(original) - 1, 8).astype(int)
    rows = [np.concatenate(list(a[idx]), 1) for a in (original, recon)]
    image = np.concatenate(rows, 0)
    image = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def train_variant(name, clip, steps, seed, batch, lr, seconds=None):
    kwargs, weights, kl_weight = VARIANTS[name]
    torch.manual_seed(seed)
    model = build(kwargs).to(memory_format=torch.channels_last)
    model.corrupt = 0.3 if name.endswith("-dn") else 0
    model.input_noise = 0.02 if name.endswith("-n") else 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    train, held_out, _ = load_clip(clip)
    frames = torch.from_numpy(train)
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    step = 0
    while (step < steps) if seconds is None else (time.monotonic() - started < seconds):
        step += 1
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        rows = torch.randint(len(frames), (batch,), generator=generator)
        images = frames[rows].permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", torch.bfloat16, enabled=BF16):
            recon, kl = model(images, generator)
        loss = loss_fn(recon, images, weights) + kl_weight * kl / images[0].numel()
        if name.endswith("-c"):
            loss = loss + CENTER_WEIGHT * model.quantizer.gap
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if CLIP:
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        if step % 1000 == 0:
            print(f"  step {step} loss {loss.item():.5f}", flush=True)
    train_s = time.monotonic() - started
    recon = reconstruct(model, held_out)
    steps = step
    result = {"variant": name, "clip": clip, "seed": seed, "steps": steps, "batch": batch,
              "frames_per_s": round(steps * batch / train_s, 1), "params": sum(p.numel() for p in model.parameters()),
              **score(held_out, recon), "realism": realism(recon, held_out, train), "train_recon": score(train[-200:], reconstruct(model, train[-200:]))}
    OUT.mkdir(parents=True, exist_ok=True)
    strip(held_out, recon, OUT / f"{clip}-{name}-s{seed}.png")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / f"{clip}-{name}-s{seed}.safetensors")
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--variants", nargs="+", default=["fsq4"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seconds", type=float, help="train this long instead of --steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-grad", type=float, default=0.0)
    args = parser.parse_args()
    global CLIP
    CLIP = args.clip_grad
    for clip in args.clips:
        for name in args.variants:
            result = train_variant(name, clip, args.steps, args.seed, args.batch, args.lr, args.seconds)
            print(json.dumps(result), flush=True)
            with open(OUT / "results.jsonl", "a") as log:
                log.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
