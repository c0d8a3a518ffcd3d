"""Lab screen (issue 19, stickiness): does a renderer trained on corrupted previous maps, told the corruption level
(GameNGen's noise augmentation, for FSQ cells), follow g more, so that dreams move and leave the scene they start in?

Spatial dreams move too little (flow 0.15-0.42 of the source's, coverage 0.13-0.69, River Raid freezes): the
renderer copies the previous map's cells, the copy bonus being the prediction to beat. Here, while training, each
pair's previous map has a random share s ~ U(0, MAX) of its cells replaced by uniformly random codes, and s is an
input of the renderer (a learned vector added to its features). Dreaming feeds clean maps with a level of the
dreamer's choice: 0 (trust the map) or more (trust g more).

The dream model alone is retrained on a trained run's maps by the product's own stage (its keep-best epoch
included) for `--seconds`, then dreams `--frames` frames scored with `dreamvid eval`'s metrics.

    python lab/renderer_noise_screen.py /tmp/res10/enduro--default--seed0/run ... --seconds 150
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import LAYOUT_CHANNELS, MapRenderer

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
ORIGINAL = {name: getattr(MapRenderer, name) for name in ("__init__", "features")}


@contextlib.contextmanager
def noisy_renderer(most: float, dream_level: float):
    """MapRenderer trained with a share U(0, most) of the previous map's cells random, told the share; dreaming
    (eval mode) tells it `dream_level` on a clean map."""
    def __init__(self, fsq, size, width):
        ORIGINAL["__init__"](self, fsq, size, width)
        self.level = nn.Linear(1, width)

    def features(self, previous, g):
        maps, _, height, width = previous.shape
        if self.training:
            level = torch.rand(maps, 1, 1, 1, device=previous.device) * most
            flipped = torch.rand(maps, 1, height, width, device=previous.device) < level
            noise = self.fsq.code_values(torch.randint(self.fsq.codes, (maps, height, width), device=previous.device))
            previous = torch.where(flipped, noise.to(previous.dtype), previous)
        else:
            level = previous.new_full((maps, 1, 1, 1), dream_level)
        told = self.level(level.flatten(1).to(self.level.weight.dtype))[:, :, None, None]
        side = previous.shape[-1]
        layout = self.layout(g).view(-1, LAYOUT_CHANNELS, 4, 4)
        layout = F.interpolate(layout, size=(side, side), mode="bilinear").to(previous.dtype)
        x = F.silu(self.embed(torch.cat([previous, layout], 1))) + self.scene(g)[:, :, None, None] + told
        x = self.fine(x)
        coarse = self.coarse(F.silu(self.down(x)))
        coarse = coarse + coarse.mean((2, 3), keepdim=True)
        return torch.cat([x, F.silu(self.up(coarse)), previous], 1)

    MapRenderer.__init__, MapRenderer.features = __init__, features
    try:
        yield
    finally:
        MapRenderer.__init__, MapRenderer.features = ORIGINAL["__init__"], ORIGINAL["features"]


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
    parser.add_argument("--most", type=float, default=0.3, help="the largest share of cells corrupted in training")
    parser.add_argument("--dream-levels", nargs="+", type=float, default=[0.0, 0.2])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-noise-") as work:
            retrain(run, Path(work) / "control", args.seconds)
            print(json.dumps({"run": name, "variant": "control", **scored(Path(work) / "control", args.frames,
                                                                          seed, source)}), flush=True)
            with noisy_renderer(args.most, 0.0):
                retrain(run, Path(work) / "noise", args.seconds)
            for level in args.dream_levels:
                with noisy_renderer(args.most, level):
                    row = scored(Path(work) / "noise", args.frames, seed, source)
                print(json.dumps({"run": name, "variant": f"noise {args.most} dream {level}", **row}), flush=True)


if __name__ == "__main__":
    main()
