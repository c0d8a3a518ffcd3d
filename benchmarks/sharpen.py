"""Sharpening after the decoder: what an unsharp mask on every decoded frame buys on finished cells.

    python benchmarks/sharpen.py results/*--default --target 1.0 -o sharpened

The decoder is blurry after 10 CPU minutes (docs/results.md), so the cheapest conceivable fix is a classical
one: an unsharp mask, `x + amount * (x - gaussian_blur(x, sigma))`, on each decoded image before it becomes
uint8. Its amount is fitted per run, on training frames only, so that the decoder's reconstructions of them
have `--target` times the training frames' own variance of the Laplacian (the evaluation's sharpness). Each
cell is then scored as presets.py scores it, with every frame the decoder draws sharpened (dream and
reconstructions), into OUT/FOLDER/CELL+sharpen. The models are the cell's own; only the frames change.

The mask is applied by wrapping `Dreamer.decode` inside this process: it is a measurement, not a setting.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import presets  # noqa: E402
from common import machine  # noqa: E402
from dreamvid import dreaming, metrics  # noqa: E402
from dreamvid.device import autocast  # noqa: E402
from dreamvid.models import tensor_to_frames  # noqa: E402


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = int(np.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def unsharp(images: torch.Tensor, amount: float, sigma: float) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] plus `amount` times their difference from a Gaussian blur of them."""
    kernel = gaussian_kernel(sigma).to(images)
    radius, channels = len(kernel) // 2, images.shape[1]
    blurred = F.pad(images, (radius,) * 4, mode="replicate")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return (images + amount * (images - blurred)).clamp(0, 1)


class SharpenedDecode:
    """While active, every `Dreamer.decode` in this process returns unsharp-masked frames."""

    def __init__(self, amount: float, sigma: float):
        self.amount, self.sigma = amount, sigma

    def __enter__(self) -> "SharpenedDecode":
        self.original = dreaming.Dreamer.decode
        amount, sigma = self.amount, self.sigma

        @torch.no_grad()
        def decode(dreamer: dreaming.Dreamer, z: torch.Tensor) -> np.ndarray:
            with autocast(dreamer.device, dreamer.bf16):
                images = dreamer.vae.decode(z.to(dreamer.device))
            return tensor_to_frames(unsharp(images.float(), amount, sigma))

        dreaming.Dreamer.decode = decode
        return self

    def __exit__(self, *exc) -> None:
        dreaming.Dreamer.decode = self.original


def fit_amount(run: Path, target: float, sigma: float, frames: int = 256, steps: int = 14) -> float:
    """The amount (bisected in [0, 4]) at which the reconstructions of `frames` evenly spaced training frames
    have `target` times the training frames' mean variance of the Laplacian."""
    dreamer = dreaming.load(run, device="cpu")
    train = metrics.concat(dreamer.cache.split("train"))
    train = train[metrics.evenly(len(train), frames)]
    latents = dreamer.encode(train)[0]
    wanted = target * float(metrics.laplacian_var(train).mean())
    low, high = 0.0, 4.0
    for _ in range(steps):
        amount = (low + high) / 2
        with SharpenedDecode(amount, sigma):
            reached = float(metrics.laplacian_var(dreamer.decode(latents)).mean())
        low, high = (amount, high) if reached < wanted else (low, amount)
    return (low + high) / 2


def score_sharpened(cell: Path, out: Path, target: float, sigma: float) -> tuple[Path, float]:
    fields = json.loads((cell / "summary.json").read_text())
    amount = fit_amount(cell / "run", target, sigma)
    scored = out / cell.resolve().parent.name / f"{cell.name}+sharpen"
    scored.mkdir(parents=True, exist_ok=True)
    if not (scored / "run").exists():
        (scored / "run").symlink_to((cell / "run").resolve())
    seed = json.loads((cell / "eval" / "report.json").read_text())["meta"]["seed"]
    with SharpenedDecode(amount, sigma):
        presets.score_cell(scored, 10000, seed, clip=fields["clip"], variant=f"{fields['variant']}+sharpen",
                           minutes=fields["minutes"], sharpen_amount=amount, sharpen_sigma=sigma,
                           sharpen_target=target)
    return scored, amount


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells", type=Path, nargs="+")
    parser.add_argument("--target", type=float, default=1.0,
                        help="the training reconstructions' sharpness the amount is fitted to, x the source's")
    parser.add_argument("--sigma", type=float, default=0.7, help="the mask's Gaussian blur, in pixels")
    parser.add_argument("-o", "--out", type=Path, default=Path("sharpened"))
    args = parser.parse_args()
    torch.manual_seed(0)
    print(machine())
    for cell in args.cells:
        scored, amount = score_sharpened(cell, args.out, args.target, args.sigma)
        summary = json.loads((scored / "summary.json").read_text())
        met, total = presets.figures_met(summary["metrics"], presets.WORLDMODELS_REALISM[summary["clip"]])
        print(f"{scored}: amount {amount:.3f}, issue 4's figures met {met} of {total}", flush=True)


if __name__ == "__main__":
    main()
