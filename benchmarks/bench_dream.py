"""Dreaming throughput: RNN sampling + VAE decoding + encoding to H.264, the whole `dreamvid dream` path.

    python benchmarks/bench_dream.py                   # default preset, 64 px, 3000 frames, CPU
    python benchmarks/bench_dream.py --device cuda --size 128
    python benchmarks/bench_dream.py --reproject       # each latent through decode -> encode before it is fed back
    python benchmarks/bench_dream.py --backend onnx    # stepped and decoded through ONNX Runtime
    python benchmarks/bench_dream.py --run RUN_DIR     # a trained run: its patch memory redraws fewer cells

Without --run the run is made from freshly initialised models: the network's speed does not depend on what the
weights learned, and its patch memory remembers nothing, so every cell is searched (the worst case).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import machine, peak_rss_mb
from dreamvid.config import make_config
from dreamvid.dreaming import load
from dreamvid.rundir import RunDir
from dreamvid.models import SpatialVAE, build_rnn, build_vae, tensor_to_frames
from dreamvid.models.patch_memory import PatchMemory


def make_untrained_run(directory: Path, preset: str, size: int, fps: float = 15) -> Path:
    config = make_config(preset, size=size, fps=fps)
    run = RunDir(directory)
    run.write_config(config)
    vae = build_vae(config.vae)
    run.save_weights("vae", vae)
    run.save_weights("rnn", build_rnn(config.rnn, vae))
    latents = torch.randn(200, *vae.latent_shape)
    run.save_latents({"mu": latents, "logvar": torch.zeros_like(latents), "sequences": torch.tensor([[0, 200]]),
                      "train": torch.tensor([[0, 180]]), "val": torch.tensor([[180, 200]])})
    if isinstance(vae, SpatialVAE):   # dreaming looks every cell up in it: its cost is part of the figure
        codes = vae.quantise.code(latents)
        with torch.no_grad():
            frames = tensor_to_frames(vae.decode(vae.quantise.code_values(codes)))
        run.save_memory(PatchMemory.build(codes.numpy(), frames, vae.quantise.levels).state_dict())
    return directory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="default")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reproject", action="store_true")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--run", type=Path, help="a trained run to dream (default: an untrained one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_untrained_run(Path(tmp), args.preset, args.size)
        started = time.perf_counter()
        dreamer = load(run, device=args.device, backend=args.backend)
        dreamer.onnx  # the onnx backend traces its graphs on first use: part of loading, not of dreaming
        print(f"machine: {machine()}; device {dreamer.device}; backend {args.backend}, loaded in "
              f"{time.perf_counter() - started:.1f} s")
        parts = {}
        sampling = "RNN sampling" + (" re-projected" if args.reproject else "")
        for name, work in ((sampling, lambda: dreamer.session(seed=0, reproject=args.reproject)
                            .next_latents(args.frames)),
                           ("VAE decoding", lambda: [dreamer.decode(torch.randn(64, *dreamer.vae.latent_shape))
                                                     for _ in range(args.frames // 64)])):
            started = time.perf_counter()
            work()
            parts[name] = args.frames / (time.perf_counter() - started)
        rates = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            dreamer.dream(frames=args.frames, seed=repeat, reproject=args.reproject).save(
                Path(tmp) / f"d{repeat}.mp4", progress=False)
            rates.append(args.frames / (time.perf_counter() - started))
        rates.sort()
        label = args.run or f"{args.preset} {args.size} px"
        print(f"{label}: " + ", ".join(f"{k} {v:.0f} frames/s" for k, v in parts.items()))
        print(f"dream to H.264 mp4 (upscaled to >= 256 px): median {rates[len(rates) // 2]:.0f} frames/s "
              f"over {args.repeats} runs of {args.frames} frames (all: {', '.join(f'{r:.0f}' for r in rates)}); "
              f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
