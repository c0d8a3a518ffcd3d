"""Decoder tuning on finished cells: the same VAE and RNN, only the decoder trained further on latent means.

    python benchmarks/decoder_tuning.py results/enduro--default --seconds 90 --spreads 0.5 0 -o tuned

Each cell's decoder is trained for `--seconds` more, as `VAEConfig.decoder_tuning` trains it at the end of the
VAE stage (the run's own Adam state carried on, the encoder frozen), then the cell is scored by `dreamvid eval`
as presets.py scores it, once per decode spread, into OUT/FOLDER/CELL+dectuneS+spreadX. The latents and the
RNN are the cell's own, so the rows differ from the cell's only by the decoder and the spread: a diagnosis at
extra training time, not an equal-time comparison (presets.py grid is that).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import presets  # noqa: E402
from common import machine  # noqa: E402
from dreamvid import checkpoint  # noqa: E402
from dreamvid.dreaming import load  # noqa: E402
from dreamvid.evaluation import reconstruction  # noqa: E402
from dreamvid.models import frames_to_tensor  # noqa: E402
from dreamvid.training import decoder_train_step  # noqa: E402


def tune_decoder(run: Path, tuned: Path, seconds: float, seed: int) -> dict:
    """A copy of `run` in `tuned` (its frame cache linked) whose decoder trained `seconds` more on means;
    returns the held-out reconstruction figures before and after."""
    dreamer = load(run, device="cpu")
    before, _ = reconstruction(dreamer, dreamer.cache.split("val"))
    vae = dreamer.vae.train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=dreamer.config.vae.lr)
    checkpoint.load_optimizer(run / "state" / "vae_optimizer.safetensors", optimizer)
    frames = np.asarray(dreamer.cache.frames)
    train = np.concatenate([np.arange(a, b) for a, b in dreamer.cache.split_ranges("train")])
    batch = min(dreamer.config.train.batch_size, len(train))
    rng = np.random.default_rng(seed)
    steps, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        rows = np.sort(rng.choice(train, batch, replace=False))
        images = frames_to_tensor(frames[rows]).contiguous(memory_format=torch.channels_last)
        decoder_train_step(vae, optimizer, images, dreamer.bf16)
        steps += 1
    vae.eval()
    after, _ = reconstruction(dreamer, dreamer.cache.split("val"))
    shutil.rmtree(tuned, ignore_errors=True)
    shutil.copytree(run, tuned, ignore=shutil.ignore_patterns("cache"), symlinks=True)
    (tuned / "cache").symlink_to((run / "cache").resolve())
    checkpoint.save_tensors(tuned / "vae.safetensors", vae.state_dict())
    return {"steps": steps, "before": before, "after": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", type=Path, nargs="+")
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--spreads", type=float, nargs="+", default=[0.5, 0.0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0, help="the tuning's batch order")
    parser.add_argument("-o", "--out", type=Path, default=Path("decoder-tuning"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    print(machine(), flush=True)
    for cell in args.cells:
        fields = json.loads((cell / "summary.json").read_text())
        dream_seed = json.loads((cell / "eval" / "report.json").read_text())["meta"]["seed"]
        folder = args.out / cell.resolve().parent.name
        tuned = folder / "tuned-runs" / f"{cell.name}+dectune{args.seconds:g}s"
        figures = tune_decoder(cell / "run", tuned, args.seconds, args.seed)
        print(f"{cell}: {figures['steps']} decoder steps; held-out reconstructions: PSNR "
              f"{figures['before']['psnr']:.2f} -> {figures['after']['psnr']:.2f} dB, sharpness "
              f"{figures['before']['sharpness_ratio']:.3f} -> {figures['after']['sharpness_ratio']:.3f}", flush=True)
        for spread in args.spreads:
            suffix = f"+dectune{args.seconds:g}s+spread{spread:g}"
            target = folder / f"{cell.name}{suffix}"
            target.mkdir(parents=True, exist_ok=True)
            presets.with_spread(tuned, target / "run", spread)
            presets.score_cell(target, args.frames, dream_seed, clip=fields["clip"],
                               variant=f"{fields['variant']}{suffix}", minutes=fields["minutes"])
            print(target, flush=True)


if __name__ == "__main__":
    main()
