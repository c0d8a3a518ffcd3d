"""Screen: the motion model trained on the layouts of maps the renderer drew, as it is fed in a dream
(issue 19, River Raid's freezing)

Given the source's g, the renderer follows River Raid's river (95% of cells agree after 300 steps), and so do
the motion model's draws while it is fed the source's g (93%): the freeze lives in the motion model's loop. In a
dream it is fed the g of the map the renderer drew, which lags the g asked for (docs/results.md: 1.4 from it),
while it only ever learned from the source's g. Here, for half the windows, its inputs are the g's of maps the
renderer drew (each from the true map before, given the true next g, 2 MaskGIT rounds at the run's temperature,
no gradient) and its targets the true next g's: it learns where the layout goes from what a dream shows it, as
the renderer already learns from maps it drew (OWN_MAPS). Dream model retrained on a run's maps for `--seconds`
by the product's stage, 2,000-frame dreams scored with `dreamvid eval`'s metrics; controls: the same protocol in
`lab/joint_mixture_screen.py` (at 23ca419), retrained today's model.

    python lab/motion_own_maps_screen.py /tmp/res10-own/riverraid--default--seed0/run ... [--control]

Screened 2026-12-07 (150 s, 2,000-frame dreams; controls from joint_mixture_screen.py the same day), control ->
motion on drawn maps' layouts: River Raid seed 0 / 1 frozen share 0.96 / 0.92 -> 0.94 / 0.99, frame difference
0.05 / 0.08 -> 0.05 / 0.04; Enduro seed 0 frame difference 0.90 -> 1.14, flow 0.78 -> 0.96, but realism 1.11 ->
1.61. River Raid stays frozen: not kept.
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
from dreamvid.models import map_dream
from dreamvid.models.map_dream import PAIRS_PER_WINDOW, MapDreamer

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
SHARE = 0.5      # windows whose motion inputs are drawn maps' layouts


@torch.no_grad()
def _drawn_layouts(self, window, g, batch):
    """g (B, T+1, size) of each map after the first as the renderer draws it from the true map before, given
    its true g; the first map's own."""
    windows, steps = window.shape[:2]
    rounds = self.config.sampling_steps
    previous = window[:, :-1].flatten(0, 1)
    uniforms = batch.rand((len(previous), rounds, 1, *previous.shape[2:]), previous.device).transpose(0, 1)
    drawn = self.renderer.fill(self.renderer.features(previous, g[:, 1:].flatten(0, 1)), rounds,
                               self.config.temperature, uniforms)
    drawn_g = self.summary.encode(drawn.to(window.dtype))[0].view(windows, steps - 1, -1)
    return torch.cat([g[:, :1], drawn_g], 1)


def _loss(self, inputs, targets, batch=None):
    window = torch.cat([inputs[:, :1], targets], 1)
    windows, steps = window.shape[:2]
    batch = batch or map_dream.StepBatch()
    summary_loss, g = self.summary.loss(window.flatten(0, 1), batch)
    g = g.view(windows, steps, -1)
    own = (batch.rand((windows, 1, 1), window.device) < SHARE).to(g.dtype)
    seen = own * _drawn_layouts(self, window, g, batch) + (1 - own) * g
    motion_loss = self.motion.loss(seen[:, :-1], g[:, 1:], batch)
    t = 1 + batch.randint(steps - 2, (windows, PAIRS_PER_WINDOW), window.device)
    rows = torch.arange(windows, device=window.device)[:, None]
    previous = window[rows, t].flatten(0, 1)
    previous = self._some_drawn(previous, window[rows, t - 1].flatten(0, 1), g[rows, t].flatten(0, 1), batch)
    features = self.renderer.features(previous, g[rows, t + 1].flatten(0, 1))
    render_loss = self.renderer.loss(features, window[rows, t + 1].flatten(0, 1), batch)
    return summary_loss / math.prod(window.shape[-2:]) + motion_loss / g.shape[-1] + render_loss


ORIGINAL_LOSS = MapDreamer.loss


@contextlib.contextmanager
def motion_own_maps():
    MapDreamer.loss = _loss
    try:
        yield
    finally:
        MapDreamer.loss = ORIGINAL_LOSS


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
    return {f"{group[:4]}.{key[:6]}": round(float(metrics[group][key]), 3) for group, key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--control", action="store_true", help="also retrain today's dream model")
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-motion-own-") as work:
            if args.control:
                retrain(run, Path(work) / "control", args.seconds)
                print(json.dumps({"run": name, "variant": "control",
                                  **scored(Path(work) / "control", args.frames, seed, source)}), flush=True)
            with motion_own_maps():
                retrain(run, Path(work) / "own", args.seconds)
            print(json.dumps({"run": name, "variant": "motion own maps",
                              **scored(Path(work) / "own", args.frames, seed, source)}), flush=True)


if __name__ == "__main__":
    main()
