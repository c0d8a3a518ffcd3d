"""Lab screen (Spatial issue): levers of the new default, trained whole with `dreamvid.train` and scored by
`dreamvid.evaluate`, so every figure is the product's own.

    python lab/spatial_levers.py train --clips enduro riverraid --variants default own0.25 --minutes 6
    python lab/spatial_levers.py dream --clips enduro --variants default --temperatures 0.7 1.0 --rounds 2 4
    python lab/spatial_levers.py table

Training variants override fields of the `spatial` preset; dream variants (temperature, MaskGIT rounds) reuse a
trained run. Cells go to /tmp/dreamvid-lab/levers/CLIP--VARIANT--seedN/.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import dreamvid
from dreamvid.config import PRESETS
from dreamvid.footage import footage_path

ROOT = Path("/tmp/dreamvid-lab/levers")
FIGURES = [("realism", "ratio"), ("sharpness", "ratio"), ("reconstruction", "sharpness_ratio"),
           ("reconstruction", "psnr"), ("copying", "longest_run_frames"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
           ("motion", "frozen_share"), ("coverage", "visited_share")]
VARIANTS = {
    "default": {},
    "own0.25": {"rnn": {"own_samples": 0.25}},
    "noise0.2": {"rnn": {"context_noise": 0.2}},
    "vae0.3": {"train": {"vae_share": 0.3}},
    "vae0.7": {"train": {"vae_share": 0.7}},
    "wide": {"rnn": {"width": 48, "hidden": 64}},
}


def config_for(variant: str):
    if variant in PRESETS:  # a whole preset, as shipped
        return PRESETS[variant]()
    config = PRESETS["spatial"]()
    for section, fields in VARIANTS[variant].items():
        setattr(config, section, replace(getattr(config, section), **fields))
    return config


def train_cell(clip: str, variant: str, minutes: float, seed: int, frames: int) -> None:
    cell = ROOT / f"{clip}--{variant}--seed{seed}"
    source = footage_path(clip, ROOT / "footage", n_frames=3000)
    started = time.monotonic()
    dreamvid.train(source, cell / "run", preset=config_for(variant), minutes=minutes, seed=seed, force=True,
                   progress=False, device="cpu")
    train_s = time.monotonic() - started
    score_cell(cell, frames, seed, tag="", train_s=round(train_s, 1), minutes=minutes)


def score_cell(cell: Path, frames: int, seed: int, tag: str, temperature: float | None = None,
               rounds: int | None = None, **fields) -> dict:
    from dreamvid.evaluation import evaluate
    if rounds is not None:  # a dream-time setting: written into the run's config for this score only
        config_path = cell / "run" / "config.json"
        raw = json.loads(config_path.read_text())
        original = raw["rnn"]["sampling_steps"]
        raw["rnn"]["sampling_steps"] = rounds
        config_path.write_text(json.dumps(raw))
    try:
        report = evaluate(cell / "run", frames=frames, seed=seed, temperature=temperature, out=cell / f"eval{tag}",
                          progress=False)
    finally:
        if rounds is not None:
            raw["rnn"]["sampling_steps"] = original
            config_path.write_text(json.dumps(raw))
    summary = {"cell": cell.name, "tag": tag, **fields,
               **{f"{g}.{n}": report["metrics"].get(g, {}).get(n) for g, n in FIGURES}}
    (cell / f"summary{tag}.json").write_text(json.dumps(summary, indent=1, default=float))
    print(json.dumps(summary, default=float), flush=True)
    return summary


def table() -> None:
    print("| cell | " + " | ".join(f"{g}.{n}" for g, n in FIGURES) + " |")
    for path in sorted(ROOT.glob("*/summary*.json")):
        s = json.loads(path.read_text())
        values = [s.get(f"{g}.{n}") for g, n in FIGURES]
        print(f"| {s['cell']}{s['tag']} | " + " | ".join("-" if v is None else f"{v:.3g}" for v in values) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    dream = sub.add_parser("dream")
    for p in (train, dream):
        p.add_argument("--clips", nargs="+", default=["enduro"])
        p.add_argument("--variants", nargs="+", default=["default"])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--frames", type=int, default=3000)
    train.add_argument("--minutes", type=float, default=6)
    dream.add_argument("--temperatures", nargs="+", type=float, default=[None])
    dream.add_argument("--rounds", nargs="+", type=int, default=[None])
    sub.add_parser("table")
    args = parser.parse_args()
    if args.command == "table":
        return table()
    for clip in args.clips:
        for variant in args.variants:
            if args.command == "train":
                train_cell(clip, variant, args.minutes, args.seed, args.frames)
                continue
            cell = ROOT / f"{clip}--{variant}--seed{args.seed}"
            for temperature in args.temperatures:
                for rounds in args.rounds:
                    score_cell(cell, args.frames, args.seed, f"-t{temperature}-k{rounds}", temperature, rounds)


if __name__ == "__main__":
    main()
