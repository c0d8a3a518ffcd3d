"""Lab screen (issue 19, the grain): do more FSQ codes per cell draw live action with less grain?

The spatial VAE gives each 4x4-pixel cell one of 125 codes (levels 5, 5, 5). On live action that is too few
(`bikes`: 24.6 dB held out), and its reconstructions' grain caps every dream's patch realism. FSQ's own paper
recommends (8, 5, 5, 5) = 1,000 codes at this size. Trains the VAE alone (the product's training step) for a
fixed time per variant, clip and seed and scores held-out reconstructions as `dreamvid eval` does (PSNR,
sharpness ratio, patch realism ratio).

    python lab/fsq_codes_screen.py --clips bikes enduro --seeds 0 1 --seconds 150

Screened 2026-12-07 (150 s each, dev CPU), held-out patch realism 125 -> 1,000 codes: bikes 1.34 -> 1.31 and
1.34 -> 1.28, Enduro 2.66 -> 2.55 and 2.80 -> 1.89; PSNR up 0.4-4.2 dB; sharpness within 0.03. Better in 4 of 4,
so the question left is the whole run: does the dream model, its head 8x wider, dream better from 1,000 codes?
Whole, 10 min, seed 0 (`--whole /tmp/fsq-whole --seeds 0`, against the 125-code grid cells): bikes dream realism
2.07 -> 1.97, frame diff 0.63 -> 0.87, coverage 0.50 -> 0.81, figures 4 -> 5 of 9; Enduro realism 2.23 -> 1.08
but dream sharpness 0.66 -> 0.40, figures 4 -> 3. Next: seed 1, River Raid and carphone, and dreaming speed.
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
from dreamvid.device import fast_bf16, place
from dreamvid.evaluation import metrics as M
from dreamvid.evaluation.scoring import realism_ratio
from dreamvid.footage import footage_path
from dreamvid.models import StepBatch, build_vae, frames_to_tensor, tensor_to_frames
from dreamvid.training import vae_train_step

cv2.setNumThreads(1)
WORK = Path("/tmp/dreamvid-lab/fsq")
VARIANTS = {"125 codes": {"levels": (5, 5, 5)}, "1000 codes": {"levels": (8, 5, 5, 5)}}


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
        images = frames_to_tensor(frames[np.sort(rng.choice(len(frames), 16, replace=False))])
        vae_train_step(vae, optimizer, images.contiguous(memory_format=torch.channels_last),
                       StepBatch(torch.Generator().manual_seed(steps)), bf16)
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
    parser.add_argument("--clips", nargs="+", default=["bikes", "enduro"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--whole", type=Path, help="train the 1,000-code default whole into this grid folder")
    args = parser.parse_args()
    if args.whole:
        whole(args.clips, args.seeds[0], args.whole)
        return
    base = PRESETS["default"]().vae
    for clip in args.clips:
        train_frames, heldout, fps = frames_of(clip)
        source = M.Source(train_frames, heldout, fps)
        for seed in args.seeds:
            for name, change in VARIANTS.items():
                vae, steps = train(replace(base, **change), train_frames, args.seconds, seed)
                row = {"clip": clip, "seed": seed, "variant": name, "steps": steps, **score(vae, source, heldout)}
                print(json.dumps(row), flush=True)



def whole(clips: list[str], seed: int, out: Path) -> None:
    """The 1,000-code default trained whole (10 min) and scored like a `benchmarks/presets.py grid` cell, to set
    against that grid's 125-code cells."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from presets import run_cell  # noqa: E402
    import presets
    config = PRESETS["default"]()
    config.vae = replace(config.vae, levels=(8, 5, 5, 5))
    presets.preset_for = lambda clip, preset: ("default-1000", config)   # the lab's own preset, in the grid's cell
    for clip in clips:
        print(run_cell(clip, "default", seed, 10.0, 10000, out), flush=True)


if __name__ == "__main__":
    main()
