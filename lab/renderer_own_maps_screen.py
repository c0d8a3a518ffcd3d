"""Lab screen (issue 19, stickiness): does a renderer trained on maps it drew itself follow g, so that dreams move?

The renderer barely follows g: the maps it draws move their g 0.3-0.5 a step where the source's moves 0.9-2.1
(docs/results.md). In training it only ever sees the true previous map, which is already where g says; in a dream
the previous map is its own, lagging behind. Here, for a share of pairs, the previous map is replaced by the one
the renderer itself draws from the map before it (2 MaskGIT rounds at temperature 0.7, no gradient), so the target
asks it to catch up with g from its own lagging map (DIAMOND and GameNGen train on their own outputs for this).
The dream model alone is retrained on a run's maps by the product's stage for `--seconds`, then dreams `--frames`
frames scored with `dreamvid eval`'s metrics; the control is the plain renderer under the same screen.

    python lab/renderer_own_maps_screen.py /tmp/res10/enduro--default--seed0/run ... --share 0.5

Screened 2026-12-07 (150 s, 2,000-frame dreams, the runs of the spatial table's seeds 0 and 1; control: the plain
renderer under the same screen), control -> own maps 0.5, in the order Enduro, River Raid, bikes (seed 0), then the
same for seed 1:
- frame diff 0.72 / 0.10 / 0.64 -> 1.41 / 0.26 / 0.79, then 0.72 / 0.35 / 0.67 -> 0.91 / 0.12 / 1.02;
- flow 0.46 / 0.14 / 0.14 -> 0.78 / 0.29 / 0.19, then 0.37 / 0.34 / 0.32 -> 0.62 / 0.13 / 0.45;
- frozen share on the games 0.10 / 0.83 -> 0.00 / 0.55, then 0.04 / 0.24 -> 0.02 / 0.77;
- realism 1.86 / 2.36 / 2.11 -> 2.06 / 2.67 / 1.90, then 1.83 / 3.21 / 1.34 -> 1.54 / 2.30 / 1.46 (3 better, 3 worse,
  within a single run's spread).
Motion rose in 5 of 6 runs, with no doubling of realism (unlike context noise and guidance: results.md). River Raid
seed 1 froze more. The whole dream-model stage (`--seconds 300 --frames 10000`, seed 0, against the table's cells):
Enduro realism 2.23 -> 2.08, sharpness 0.66 -> 0.60, frame diff 0.87 -> 1.42 (past the band), flow 0.41 -> 0.78;
River Raid realism 2.56 -> 3.02, sharpness 0.77 -> 0.82, frame diff 0.18 -> 0.26, flow 0.18 -> 0.32, frozen share
0.73 -> 0.54; coverage unmoved on both. Next: a smaller share (0.25), seed 1 and the live clips, whole.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import PAIRS_PER_WINDOW, MapDreamer

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
ORIGINAL = MapDreamer.loss


@contextlib.contextmanager
def own_maps(share: float):
    """MapDreamer.loss with the renderer's previous map its own drawing for a `share` of pairs."""
    def loss(self, inputs, targets, batch=None):
        window = torch.cat([inputs[:, :1], targets], 1)
        windows, steps = window.shape[:2]
        summary_loss, g = self.summary.loss(window.flatten(0, 1), batch)
        g = g.view(windows, steps, -1)
        motion_loss = self.motion.loss(g[:, :-1], g[:, 1:], batch)
        t = 1 + torch.randint(steps - 2, (windows, PAIRS_PER_WINDOW), device=window.device)
        rows = torch.arange(windows, device=window.device)[:, None]
        previous = window[rows, t].flatten(0, 1)
        with torch.no_grad():
            before = self.renderer.features(window[rows, t - 1].flatten(0, 1), g[rows, t].flatten(0, 1))
            drawn = self.renderer.fill(before, 2, 0.7, torch.rand(2, len(previous), 1, *previous.shape[2:]))
        own = (torch.rand(len(previous), 1, 1, 1) < share).to(previous.dtype)
        previous = own * drawn.to(previous.dtype) + (1 - own) * previous
        features = self.renderer.features(previous, g[rows, t + 1].flatten(0, 1))
        render_loss = self.renderer.loss(features, window[rows, t + 1].flatten(0, 1), batch)
        return summary_loss / math.prod(window.shape[-2:]) + motion_loss / g.shape[-1] + render_loss

    MapDreamer.loss = loss
    try:
        yield
    finally:
        MapDreamer.loss = ORIGINAL


def retrain(run: Path, again: Path, seconds: float) -> None:
    """A copy of the finished `run` set back to the start of its dream-model stage with `seconds` left."""
    shutil.copytree(run, again)
    for name in ("rnn.safetensors", "state/rnn_optimizer.safetensors", "state/rnn_best.safetensors"):
        (again / name).unlink(missing_ok=True)
    log = [line for line in (again / "log.jsonl").read_text().splitlines() if json.loads(line)["stage"] == "vae"]
    (again / "log.jsonl").write_text("".join(line + "\n" for line in log))
    budget = json.loads((again / "config.json").read_text())["train"]["minutes"] * 60
    (again / "state" / "train_state.json").write_text(json.dumps({"stage": "rnn", "elapsed": budget - seconds}))
    dreamvid.train(out=again, resume=True, device="cpu", progress=False)


def scored(again: Path, frames: int, seed: int, source) -> dict:
    dream = np.stack(list(dreamvid.load(again, device="cpu").dream(frames=frames, seed=seed)))
    metrics = score(dream, source=source)["metrics"]
    return {f"{group}.{key}": round(float(metrics[group][key]), 3) for group, key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--share", type=float, default=0.5, help="share of pairs whose previous map is its own")
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--control", action="store_true", help="also retrain the plain renderer")
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-own-") as work:
            if args.control:
                retrain(run, Path(work) / "control", args.seconds)
                print(json.dumps({"run": name, "variant": "control",
                                  **scored(Path(work) / "control", args.frames, seed, source)}), flush=True)
            with own_maps(args.share):
                retrain(run, Path(work) / "own", args.seconds)
            row = scored(Path(work) / "own", args.frames, seed, source)
            print(json.dumps({"run": name, "variant": f"own maps {args.share}", **row}), flush=True)


if __name__ == "__main__":
    main()
