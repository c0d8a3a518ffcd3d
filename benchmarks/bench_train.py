"""VAE and RNN training throughput with the real training steps (dreamvid.training.*_train_step).

    python benchmarks/bench_train.py                 # 64 and 128 px on this machine
    python benchmarks/bench_train.py --sizes 64 128 256 --device cuda
"""
from __future__ import annotations

import argparse

import torch

from common import machine, median_rate
from dreamvid.config import make_config
from dreamvid.device import fast_bf16, place, resolve_device, uses_channels_last
from dreamvid.models import build_rnn, build_vae, frames_to_tensor
from dreamvid.training import rnn_train_step, vae_train_step


def vae_rate(preset: str, size: int, device: torch.device, bf16: bool, batch: int, steps: int) -> float:
    config = make_config(preset, size=size)
    vae = place(build_vae(config.vae), device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.vae.lr)
    frames = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    images = frames_to_tensor(frames, device)
    if uses_channels_last(vae, device):
        images = images.contiguous(memory_format=torch.channels_last)

    def work() -> int:
        for _ in range(steps):
            vae_train_step(vae, optimizer, images, None, bf16)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps * batch
    return median_rate(work, repeats=3)[0]


def rnn_rate(preset: str, device: torch.device, steps: int, bf16: bool) -> float:
    config = make_config(preset)
    vae = build_vae(config.vae)
    latent_shape = vae.latent_shape
    rnn = build_rnn(config.rnn, vae).to(device)
    optimizer = torch.optim.Adam(rnn.parameters(), lr=config.rnn.lr)
    batch, seq = config.train.rnn_batch_size, config.rnn.seq_len
    window = torch.randn(batch, seq + 1, *latent_shape, device=device)

    def work() -> int:
        for _ in range(steps):
            rnn_train_step(rnn, optimizer, window[:, :-1], window[:, 1:], bf16=bf16)
        return steps * batch * seq
    return median_rate(work, repeats=3)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"machine: {machine()}; device {device}")
    for size in args.sizes:
        steps = {32: 20, 64: 10, 128: 4, 256: 2}[size] * (20 if device.type == "cuda" else 1)
        modes = [False, True] if fast_bf16(device) else [False]
        for bf16 in modes:
            rate = vae_rate(args.preset, size, device, bf16, args.batch, steps)
            print(f"VAE train {size:>3} px, batch {args.batch}, {'bf16' if bf16 else 'fp32'}: {rate:8.0f} frames/s")
    for bf16 in [False, True] if fast_bf16(device) else [False]:
        rate = rnn_rate(args.preset, device, 20 if device.type == "cuda" else 5, bf16)
        print(f"RNN train ({args.preset}), {'bf16' if bf16 else 'fp32'}: {rate:8.0f} latent steps/s")


if __name__ == "__main__":
    main()
