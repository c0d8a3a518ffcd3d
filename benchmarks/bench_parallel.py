"""Data-parallel training: frames/s of N processes against 1 at the same global batch, and how closely their
losses follow each other step by step.

    python benchmarks/bench_parallel.py                         # default preset, Enduro, 1 and 2 processes
    python benchmarks/bench_parallel.py --fp32                  # the same without bf16 autocast
    python benchmarks/bench_parallel.py --preset worldmodels --nproc 1 2 --vae-epochs 3
    python benchmarks/bench_parallel.py --device cuda --nproc 1 4   # a machine with 4 GPUs

Each run trains the preset on the built-in clip for fixed epochs (so every run does the same steps), each N
`--repeats` times, interleaved; speeds are medians, losses compare the first runs. Speed is read
from the run's own log: the frames (VAE) and windows (dream model) of every epoch after the first, over the
wall time between the first epoch's end and the stage's last, so start-up and the first epoch's warm-up are left
out. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import dreamvid
from dreamvid import footage
from dreamvid.config import make_config

from common import machine


def stage_rates(run: Path, batch: dict[str, int]) -> dict[str, float]:
    """Samples/s of each stage, over its epochs after the first."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = {}
    for stage in ("vae", "rnn"):
        mine = [r for r in records if r["stage"] == stage]
        steps = sum(len(r["step_losses"]) for r in mine[1:])
        rates[stage] = steps * batch[stage] / (mine[-1]["elapsed_s"] - mine[0]["elapsed_s"])
    return rates


def epoch_losses(run: Path) -> dict[str, list[list[float]]]:
    """Each stage's step losses, epoch by epoch."""
    losses: dict[str, list[list[float]]] = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        losses.setdefault(record["stage"], []).append(record["step_losses"])
    return losses


def deviations(ours: list[list[float]], theirs: list[list[float]]) -> str:
    """How far `ours` is from `theirs`: at the first step, over the first 20, the median and worst step, and the
    worst epoch mean."""
    steps = [abs(a - b) / abs(b) for mine, other in zip(ours, theirs) for a, b in zip(mine, other)]
    epochs = [abs(sum(a) / len(a) - sum(b) / len(b)) / abs(sum(b) / len(b)) for a, b in zip(ours, theirs)]
    return (f"first step {steps[0]:.2%}, first 20 at most {max(steps[:20]):.2%}, median step "
            f"{statistics.median(steps):.2%}, worst step {max(steps):.2%}, worst epoch mean {max(epochs):.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--clip", default="enduro")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--vae-epochs", type=int, default=3)
    parser.add_argument("--rnn-epochs", type=int, default=3)
    parser.add_argument("--fp32", action="store_true", help="train without bf16 autocast")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each N; speeds are their medians")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: one GPU a process")
    args = parser.parse_args()
    print(machine())
    config = make_config(args.preset)
    config.train.bf16 = not args.fp32 and config.train.bf16
    batch = {"vae": config.train.batch_size, "rnn": config.train.rnn_batch_size}
    with tempfile.TemporaryDirectory() as folder:
        source = footage.footage_path(args.clip, Path(folder) / "footage", n_frames=3000)
        rates: dict[int, list[dict[str, float]]] = {nproc: [] for nproc in args.nproc}
        losses: dict[int, dict[str, list[list[float]]]] = {}
        for repeat in range(args.repeats):   # interleaved, so that a slow spell of the machine hits every N
            for nproc in args.nproc:
                run = Path(folder) / f"run{nproc}-{repeat}"
                dreamvid.train(source, run, preset=config, vae_epochs=args.vae_epochs, rnn_epochs=args.rnn_epochs,
                               device=args.device, nproc=nproc, progress=False)
                rates[nproc].append(stage_rates(run, batch))
                losses.setdefault(nproc, epoch_losses(run))
        # The dream model again, every N on the latents of the first N's VAE: its own agreement, apart from the VAE's.
        for nproc in args.nproc:
            again = rnn_again(Path(folder) / f"run{args.nproc[0]}-0", Path(folder) / f"rnn{nproc}", nproc, args.device)
            losses[nproc]["rnn on one VAE"] = epoch_losses(again)["rnn"]
    report(args, rates, losses)


def rnn_again(run: Path, again: Path, nproc: int, device: str) -> Path:
    """A copy of the finished `run` set back to the start of its dream-model stage, then resumed with `nproc`."""
    shutil.copytree(run, again)
    for name in ("rnn.safetensors", "state/rnn_optimizer.safetensors", "state/rnn_best.safetensors"):
        (again / name).unlink(missing_ok=True)
    log = [line for line in (again / "log.jsonl").read_text().splitlines() if json.loads(line)["stage"] == "vae"]
    (again / "log.jsonl").write_text("".join(line + "\n" for line in log))
    vae_time = json.loads(log[-1])["elapsed_s"]
    (again / "state" / "train_state.json").write_text(json.dumps({"stage": "rnn", "elapsed": vae_time}))
    dreamvid.train(out=again, resume=True, device=device, nproc=nproc, progress=False)
    return again


def report(args: argparse.Namespace, rates: dict, losses: dict) -> None:
    first = args.nproc[0]
    for nproc in args.nproc[1:]:
        print(f"{args.preset} rnn on one VAE: losses of {nproc} against {first} process(es): "
              f"{deviations(losses[nproc]['rnn on one VAE'], losses[first]['rnn on one VAE'])}")
    for stage in ("vae", "rnn"):
        base = statistics.median(r[stage] for r in rates[first])
        for nproc in args.nproc:
            each = [r[stage] for r in rates[nproc]]
            print(f"{args.preset}{' fp32' * args.fp32} {stage}: {nproc} process(es) median "
                  f"{statistics.median(each):7.1f} samples/s ({statistics.median(each) / base:.2f}x of {first}; "
                  f"runs {', '.join(f'{r:.0f}' for r in each)}), {sum(map(len, losses[nproc][stage]))} steps")
            if nproc != first:
                against = deviations(losses[nproc][stage], losses[first][stage])
                print(f"    losses against {first} process(es): {against}")


if __name__ == "__main__":
    main()
