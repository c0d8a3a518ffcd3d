"""Whole measurement of the own-maps renderer (lab/renderer_own_maps_screen.py) on the spatial table's cells.

Each cell of SRC (a `presets.py grid` folder whose runs have their patch memory) is copied, its dream-model stage
trained again from the start with the renderer fed its own maps for `--share` of its pairs, for the stage's whole
share of the budget (5 of the 10 minutes), then scored as `presets.py grid` scores a cell. The VAE stage, and so
the VAE, the latents and the memory, is the cell's own.

    python lab/own_maps_whole.py /tmp/res10-memory /tmp/res10-own --share 0.5
    python benchmarks/presets.py table /tmp/res10-own
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dreamvid

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from presets import realism_drift  # noqa: E402
from renderer_own_maps_screen import own_maps, retrain  # noqa: E402


def whole(cell: Path, dest: Path, share: float, seconds: float) -> None:
    target = dest / cell.name
    if (target / "summary.json").is_file():
        return
    summary = json.loads((cell / "summary.json").read_text())
    target.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with own_maps(share):
        retrain(cell / "run", target / "run", seconds)
    train_s = round(time.monotonic() - started, 1)
    started = time.monotonic()
    report = dreamvid.evaluate(target / "run", frames=summary["frames"], seed=summary["seed"], out=target / "eval",
                               progress=False)
    metrics = report["metrics"]
    metrics.setdefault("drift", {})["realism_last_over_first"] = realism_drift(report)
    summary.update(metrics=metrics, rnn_retrain_s=train_s, eval_s=round(time.monotonic() - started, 1),
                   own_maps_share=share)
    (target / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(target, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clips", nargs="+", default=["enduro", "riverraid", "bikes", "carphone"])
    args = parser.parse_args()
    for seed in (0, 1):
        for clip in args.clips:
            whole(args.source / f"{clip}--default--seed{seed}", args.dest, args.share, args.seconds)
