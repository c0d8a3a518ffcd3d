"""Screen (issue 19, stickiness): does moving the global latent g with more of the motion model's spread make
the spatial default's dreams leave their scene (coverage, flow) without losing realism?

Dream-time only: each trained `default` cell of a `benchmarks/presets.py grid` folder is rescored with
`rnn.decode_spread` set to each value (the cell's own training seed as dream seed, as the grid does), against
the cell's own summary (0.5).

    python lab/g_spread_screen.py /tmp/res10 -o /tmp/spread --spreads 1.0 0.75
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dreamvid  # noqa: E402
from presets import cells_in, figures_met, realism_drift  # noqa: E402

SHOWN = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
         ("motion", "frozen_share"), ("coverage", "visited_share"), ("copying", "longest_run_frames")]


def variant_run(cell: Path, spread: float, out: Path) -> Path:
    """A copy of the cell's run (weights hard-linked) whose config dreams with `spread`."""
    run = out / "run"
    if not run.exists():
        shutil.copytree(cell / "run", run, copy_function=os.link)
        config = json.loads((cell / "run" / "config.json").read_text())
        config["rnn"]["decode_spread"] = spread
        (run / "config.json").unlink()
        (run / "config.json").write_text(json.dumps(config, indent=2))
    return run


def score(cell: dict, spread: float, out: Path) -> dict:
    target = out / f"{cell['dir'].name}--spread{spread:g}"
    summary_path = target / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    run = variant_run(cell["dir"], spread, target)
    report = dreamvid.evaluate(run, frames=10000, seed=cell["seed"], out=target / "eval", progress=False)
    metrics = report["metrics"]
    metrics.setdefault("drift", {})["realism_last_over_first"] = realism_drift(report)
    summary = {**{k: cell[k] for k in ("clip", "preset", "seed")}, "spread": spread, "metrics": metrics}
    summary_path.write_text(json.dumps(summary, indent=2, default=float))
    return summary


def line(name: str, metrics: dict, worldmodels: float | None) -> str:
    values = [metrics.get(group, {}).get(key) for group, key in SHOWN]
    met, counted = figures_met(metrics, worldmodels)
    return f"{name:40s} " + " ".join(f"{v:7.3g}" if v is not None else "    n/a" for v in values) + f"  {met}/{counted}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("grid", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--spreads", type=float, nargs="+", default=[1.0])
    parser.add_argument("--worldmodels", type=json.loads, default='{"enduro": 1.325, "riverraid": 4.535, '
                        '"bikes": 0.846, "carphone": 0.604}', help="mean worldmodels realism per clip")
    args = parser.parse_args()
    print(f"{'cell':40s} " + " ".join(f"{k[:7]:>7s}" for _, k in SHOWN) + "  met", flush=True)
    for cell in cells_in(args.grid):
        if cell["preset"] != "default":
            continue
        base = args.worldmodels.get(cell["clip"])
        print(line(cell["dir"].name + " 0.5", cell["metrics"], base), flush=True)
        for spread in args.spreads:
            print(line(f"  spread {spread:g}", score(cell, spread, args.out)["metrics"], base), flush=True)


if __name__ == "__main__":
    main()
