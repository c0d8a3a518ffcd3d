"""Lab screen (issue 19): does a deeper spatial decoder draw less grain without losing the edges?

The spatial VAE's held-out reconstructions are sharp but grainy: their patch realism (2.1 Enduro, 4.1 River Raid)
caps every dream. Each cell's pixels are a linear map of its 3x3 neighbourhood's features at the cell grid, so
more residual blocks there give the decoder more room to join cells smoothly. Decoding is cheap (3,000 frames/s),
so a deeper decoder costs dreaming little. Trains the VAE alone for a fixed time per variant, clip and seed and
scores held-out reconstructions as `dreamvid eval` does (PSNR, sharpness ratio, patch realism ratio).

    python lab/vae_decoder_screen.py --clips enduro bikes --seeds 0 1 --seconds 150
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from dreamvid.cache import build_cache
from dreamvid.config import PRESETS
from dreamvid.device import autocast, fast_bf16, place
from dreamvid.evaluation import metrics as M
from dreamvid.evaluation.scoring import realism_ratio
from dreamvid.footage import footage_path
from dreamvid.models import build_vae, frames_to_tensor, tensor_to_frames

cv2.setNumThreads(1)
WORK = Path("/tmp/dreamvid-lab/decoder")
VARIANTS = {"dec2": {"decoder_blocks": 2}, "dec4": {"decoder_blocks": 4}}


def frames_of(clip: str) -> tuple[np.ndarray, np.ndarray, float]:
    cache = build_cache([footage_path(clip, WORK / "footage")], WORK / "cache", size=64, fps=None, crop="center",
                        progress=False)
    return np.concatenate(cache.split("train")), np.concatenate(cache.split("val")), cache.fps


def train(config, frames: np.ndarray, seconds: float, seed: int):
    torch.manual_seed(seed)
    device = torch.device("cpu")
    vae = place(build_vae(config), device).train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr)
    rng, bf16, steps, started = np.random.default_rng(seed), fast_bf16(device), 0, time.monotonic()
    while time.monotonic() - started < seconds:
        batch = frames_to_tensor(frames[np.sort(rng.choice(len(frames), 16, replace=False))])
        with autocast(device, bf16):
            loss, _ = vae.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), config.grad_clip)
        optimizer.step()
        steps += 1
    return vae.eval(), steps


@torch.no_grad()
def score(vae, source: M.Source, heldout: np.ndarray) -> dict:
    recon = tensor_to_frames(vae.decode(vae.encode(frames_to_tensor(heldout))[0]))
    return {"psnr": M.psnr_ssim(recon, heldout)["psnr"],
            "sharpness": float(M.laplacian_var(recon).mean() / max(M.laplacian_var(heldout).mean(), 1e-6)),
            "realism": realism_ratio(recon, source)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", nargs="+", default=["enduro", "bikes"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--seconds", type=float, default=150)
    args = parser.parse_args()
    base = PRESETS["default"]().vae
    for clip in args.clips:
        train_frames, heldout, fps = frames_of(clip)
        source = M.Source(train_frames, heldout, fps)
        for seed in args.seeds:
            for name, change in VARIANTS.items():
                vae, steps = train(replace(base, **change), train_frames, args.seconds, seed)
                row = {"clip": clip, "seed": seed, "variant": name, "steps": steps, **score(vae, source, heldout)}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
