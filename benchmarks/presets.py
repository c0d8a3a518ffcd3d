"""Presets and ablations at equal training time, scored by `dreamvid eval` (issue 4's table).

    python benchmarks/presets.py run enduro default --minutes 10 --frames 10000 -o results   # one cell
    python benchmarks/presets.py table results > table.md                                     # gather

`run` trains one variant on one built-in clip (dreamvid.footage) inside the budget and evaluates a dream of
`--frames` frames; each cell is independent, so cells can run side by side, each pinned to its own 2 cores
(`taskset -c 2k,2k+1`). Variants are the three presets plus the levers tried for `default`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from dreamvid.config import PRESETS, RunConfig


def _with(base: str, vae: dict | None = None, rnn: dict | None = None) -> RunConfig:
    config = PRESETS[base]()
    return replace(config, vae=replace(config.vae, **(vae or {})), rnn=replace(config.rnn, **(rnn or {})))


VARIANTS = {
    "classic": lambda: PRESETS["classic"](),
    "worldmodels": lambda: PRESETS["worldmodels"](),
    "default": lambda: PRESETS["default"](),
    "default+critic": lambda: _with("default", vae={"adversarial_weight": 0.05}),
    "wm+noise": lambda: _with("worldmodels", rnn={"input_noise": 0.05}),
    "wm+l1": lambda: _with("worldmodels", vae={"reconstruction": "l1"}),
    "wm+critic": lambda: _with("worldmodels", vae={"adversarial_weight": 0.05}),
    "wm+critic+l1": lambda: _with("worldmodels", vae={"adversarial_weight": 0.05, "reconstruction": "l1"}),
    "wm+z64": lambda: _with("worldmodels", vae={"z_dim": 64}),
    "wm+nofreebits": lambda: _with("worldmodels", vae={"free_bits": 0.0}),
    "wm+beta0.5": lambda: _with("worldmodels", vae={"kl_weight": 0.5}),
    "wm+beta0.1": lambda: _with("worldmodels", vae={"kl_weight": 0.1}),
}

# (metric group, name, label, target) for the table; targets are issue 4's figures.
COLUMNS = [
    ("realism", "ratio", "patch realism (x held-out)", "<= 1.5"),
    ("sharpness", "ratio", "sharpness", ">= 0.85"),
    ("copying", "longest_run_frames", "longest replay", "<= 30"),
    ("copying", "copy_share", "copy share", "report"),
    ("motion", "diff_ratio", "frame diff", "0.8-1.25"),
    ("motion", "flow_ratio", "flow", "0.8-1.25"),
    ("motion", "frozen_excess", "frozen excess", "<= 0.05"),
    ("coverage", "visited_share", "coverage", ">= 0.9"),
    ("drift", "realism_last_over_first", "drift (last/first realism)", "0.9-1.1"),
]


def run_cell(clip: str, variant: str, minutes: float, frames: int, out: Path, seed: int) -> Path:
    import dreamvid
    from dreamvid.evaluation import evaluate
    from dreamvid.footage import footage_path
    cell = out / f"{clip}--{variant}"
    source = footage_path(clip, out / "footage", n_frames=3000)
    config = VARIANTS[variant]()
    started = time.monotonic()
    dreamvid.train(source, cell / "run", preset=config, minutes=minutes, seed=seed, force=True, progress=False,
                   device="cpu")
    trained = time.monotonic() - started
    report = evaluate(cell / "run", frames=frames, seed=seed, out=cell / "eval", progress=False)
    metrics = report["metrics"]
    metrics.setdefault("drift", {})["realism_last_over_first"] = _realism_drift(report)
    summary = {"clip": clip, "variant": variant, "minutes": minutes, "train_s": round(trained, 1),
               "eval_s": round(time.monotonic() - started - trained, 1), "frames": frames,
               "threads": os.environ.get("OMP_NUM_THREADS"), "metrics": metrics}
    (cell / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return cell


def _realism_drift(report: dict) -> float | None:
    """Patch realism of the dream's last tenth over its first tenth (issue 4's drift figure)."""
    curve = report.get("series", {}).get("drift", {}).get("dream", {}).get("realism") or []
    values = [v for v in curve if v is not None]
    if len(values) < 10:
        return None
    tenth = len(values) // 10
    return (sum(values[-tenth:]) / tenth) / max(sum(values[:tenth]) / tenth, 1e-9)


def _value(metrics: dict, group: str, name: str):
    if name == "frozen_excess":
        motion = metrics.get("motion", {})
        return motion.get("frozen_share", 0) - motion.get("source_frozen_share", 0)
    return metrics.get(group, {}).get(name)


def table(out: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))]
    header = "| clip | variant | " + " | ".join(f"{label} ({target})" for _, _, label, target in COLUMNS) + " |"
    lines = [header, "|" + " --- |" * (len(COLUMNS) + 2)]
    for cell in cells:
        values = []
        for group, name, _, _ in COLUMNS:
            value = _value(cell["metrics"], group, name)
            values.append("n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value))
        lines.append(f"| {cell['clip']} | {cell['variant']} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    verbs = parser.add_subparsers(dest="verb", required=True)
    one = verbs.add_parser("run")
    one.add_argument("clip")
    one.add_argument("variant", choices=list(VARIANTS))
    one.add_argument("--minutes", type=float, default=10)
    one.add_argument("--frames", type=int, default=10000)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("-o", "--out", type=Path, default=Path("results"))
    gather = verbs.add_parser("table")
    gather.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.verb == "run":
        print(run_cell(args.clip, args.variant, args.minutes, args.frames, args.out, args.seed))
    else:
        print(table(args.out))


if __name__ == "__main__":
    sys.exit(main())
