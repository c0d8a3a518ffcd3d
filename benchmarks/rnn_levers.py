"""RNN levers at a tenth of the cost: retrain only the RNN of finished runs, then score a full dream.

    python benchmarks/rnn_levers.py results/enduro--default results/bikes--default --lever keep-best -o levers

Each RUN cell (from `presets.py run/grid`) keeps its VAE, latents and frame cache; the RNN stage is trained
again from scratch with the lever's settings inside the same seconds it had (the budget minus the VAE's
share), and a dream of `--frames` frames is evaluated as `presets.py` does, so the rows compare with its table.

    python benchmarks/rnn_levers.py results/bikes--default --lever as-trained --epochs 60 250 800

`--epochs` trains exactly that many RNN epochs instead, with no clock and no best-epoch pick: a scan of what
choosing another epoch could buy (one row per count; every epoch draws the same random numbers in every run
with that seed, so epoch N of a scan is epoch N of such a run, up to CPU float rounding).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import presets  # noqa: E402
from common import machine  # noqa: E402
from dreamvid.config import RunConfig  # noqa: E402

# name: RNNConfig fields changed. "as-trained" retrains with the cell's own settings: the control row.
LEVERS = {
    "as-trained": {},
    "keep-best": {"keep_best": True},
    "keep-best+noise": {"keep_best": True, "input_noise": 0.1},
    "spread0.5": {"decode_spread": 0.5},
    "keep-best+spread0.5": {"keep_best": True, "decode_spread": 0.5},
    "keep-best+spread0": {"keep_best": True, "decode_spread": 0.0},
    "keep-best+spread0.5+t0.8": {"keep_best": True, "decode_spread": 0.5, "temperature": 0.8},
    "keep-best+open0.25+spread0.5": {"keep_best": True, "open_loop": 0.25, "decode_spread": 0.5},
    "keep-best+open0.5+spread0.5": {"keep_best": True, "open_loop": 0.5, "decode_spread": 0.5},
    # On top of the cell's own settings (the 2026-12-01 rows: `default` cells trained before it had dropout):
    "gru": {"cell": "gru"},
    "dropout0.3": {"dropout": 0.3},
    "hidden128": {"hidden": 128},
    # A layer-norm LSTM, without and with dropout 0.3; a causal transformer 128 wide, 2 layers, with it.
    "lnlstm": {"cell": "lnlstm"},
    "lnlstm+dropout0.3": {"cell": "lnlstm", "dropout": 0.3},
    "transformer+dropout0.3": {"cell": "transformer", "hidden": 128, "layers": 2, "dropout": 0.3},
}


def retrain_rnn(cell: Path, lever: str, out: Path, frames: int, seed: int, train_seed: int | None = None,
                epochs: int | None = None) -> Path:
    """The RNN of `cell` trained again with `lever`'s settings (and `train_seed`, if given, instead of the
    cell's: the RNN's training-seed spread on a fixed VAE; `epochs`, if given, for exactly that many epochs
    instead of the cell's minute), then scored on a dream of `frames` (`seed`)."""
    import dreamvid
    variant = (f"{cell.name}+{lever}" + ("" if train_seed is None else f"+rnnseed{train_seed}")
               + ("" if epochs is None else f"+ep{epochs}"))
    source_run, target = cell / "run", out / variant
    run = target / "run"
    if target.exists():
        shutil.rmtree(target)
    run.mkdir(parents=True)
    for name in ("vae.safetensors", "latents.safetensors"):
        shutil.copy2(source_run / name, run / name)
    (run / "cache").symlink_to((source_run / "cache").resolve())
    (run / "previews").mkdir()
    (run / "state").mkdir()
    config = RunConfig.load(source_run / "config.json")
    config.rnn = replace(config.rnn, **LEVERS[lever])
    if train_seed is not None:
        config.train = replace(config.train, seed=train_seed)
    minutes = config.train.minutes
    if epochs is not None:
        config.rnn = replace(config.rnn, keep_best=False)
        config.train = replace(config.train, minutes=None, rnn_epochs=epochs)
    config.save(run / "config.json")
    vae_log = [line for line in (source_run / "log.jsonl").read_text().splitlines() if '"vae"' in line]
    (run / "log.jsonl").write_text("".join(line + "\n" for line in vae_log))
    # Resume at the start of the RNN stage with the clock where the VAE's share of the budget ended.
    state = {"stage": "rnn", "epoch": 0, "step": 0, "elapsed": minutes * 60 * config.train.vae_share}
    (run / "state" / "train_state.json").write_text(json.dumps(state))
    started = time.monotonic()
    dreamvid.train(out=run, resume=True, progress=False, device="cpu")
    presets.score_cell(target, frames, seed, clip=cell.name.split("--")[0],
                       variant=variant.split("--")[1], minutes=minutes,
                       rnn_s=round(time.monotonic() - started, 1))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", type=Path, nargs="+", help="finished presets.py cells (CLIP--VARIANT folders)")
    parser.add_argument("--lever", nargs="+", choices=list(LEVERS), default=["as-trained", "keep-best"])
    parser.add_argument("-o", "--out", type=Path, default=Path("rnn-levers"))
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="the dream's seed")
    parser.add_argument("--train-seed", type=int, help="train the RNN with this seed instead of the cell's")
    parser.add_argument("--epochs", type=int, nargs="+", help="train exactly these many RNN epochs, one row each")
    args = parser.parse_args()
    print(machine(), flush=True)
    for cell in args.cells:
        for lever in args.lever:
            for epochs in args.epochs or [None]:
                target = retrain_rnn(cell, lever, args.out, args.frames, args.seed, args.train_seed, epochs)
                print(f"done {target}", flush=True)
    print(presets.table(args.out))


if __name__ == "__main__":
    sys.exit(main())
