"""Screen: does a renderer given the two maps before, not one, unfreeze River Raid? (issue 19, stickiness)

River Raid's river scrolls by less than a cell a frame, so from the last map alone the renderer cannot tell which
bank cells change next: each might, none surely does, and keeping every cell is its best guess (frame difference
0.04-0.07 of the source's, docs/results.md). The map before the last shows which cells just changed, and so where
the scroll stands. Here the renderer sees both (its first convolution takes the two maps and the layout); a
dream carries the map before in the state. Its own-maps pairs draw the previous map from the two true maps before
it. The dream model alone is retrained on a run's maps by the product's stage for `--seconds`, then dreams
`--frames` frames scored with `dreamvid eval`'s metrics; the control is today's renderer under the same screen.

    python lab/two_maps_screen.py /tmp/res10-own/riverraid--default--seed0/run ... --control

Screened 2026-12-07 (150 s, 2,000-frame dreams, the own-maps runs of the spatial table), control -> two maps:
River Raid seed 0 / seed 1 frame diff 0.080 / 0.052 -> 0.060 / 0.053, frozen share 0.93 / 0.97 -> 0.90 / 0.94,
coverage 0.38 / 0.06 -> 0.13 / 0.06; Enduro seed 0 realism 1.12 -> 1.16, frame diff 0.90 -> 0.91, flow 0.78 -> 0.84.
River Raid stays frozen: not kept.
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
import torch.nn.functional as F
from torch import nn

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models import map_dream
from dreamvid.models.map_dream import LAYOUT_CHANNELS, OWN_MAPS, PAIRS_PER_WINDOW, MapDreamer, MapRenderer

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


class TwoMapRenderer(MapRenderer):
    """MapRenderer whose first convolution also sees the map before the previous one."""

    def __init__(self, fsq, size, width):
        super().__init__(fsq, size, width)
        self.embed = nn.Conv2d(2 * len(fsq.levels) + LAYOUT_CHANNELS, width, 3, 1, 1)

    def features(self, previous, g, before=None):
        before = previous if before is None else before
        side = previous.shape[-1]
        layout = F.interpolate(self.layout(g).view(-1, LAYOUT_CHANNELS, 4, 4), size=(side, side), mode="bilinear")
        x = F.silu(self.embed(torch.cat([previous, before.to(previous.dtype), layout.to(previous.dtype)], 1)))
        x = self.fine(x + self.scene(g)[:, :, None, None])
        coarse = self.coarse(F.silu(self.down(x)))
        coarse = coarse + coarse.mean((2, 3), keepdim=True)
        return torch.cat([x, F.silu(self.up(coarse)), previous], 1)


def _init(self, config, latent_shape, levels):
    ORIGINAL["__init__"](self, config, latent_shape, levels)
    self.renderer = TwoMapRenderer(self.fsq, config.global_size, config.width)


def _befores(z, state):
    """The map before each of z (B, T, ...): the state's last map for the first, else the first itself."""
    first = z[:, :1] if state is None else state[1].unsqueeze(1)
    return torch.cat([first, z[:, :-1]], 1)


def _forward(self, z, state=None, batch=None):
    params, motion_state = self.motion(self.layout(z), None if state is None else state[0], batch)
    return (params, z, _befores(z, state)), (motion_state, z[:, -1])


def _step(self, z, state=None):
    params, motion_state = self.motion.step(self.layout(z), None if state is None else state[0])
    return (params, z, z if state is None else state[1]), (motion_state, z)


def _nll(self, params, target):
    motion, current, before = params
    g = self.layout(target)
    lead = target.shape[:-3]
    flat = lambda x: x.reshape(-1, *x.shape[len(lead):])   # noqa: E731
    cells = self.renderer.nll(self.renderer.features(flat(current), flat(g), flat(before)), flat(target))
    return self.motion.nll(motion, g) + cells.view(lead)


def _mean(self, params):
    motion, current, before = params
    features = self.renderer.features(current, self.motion.mean(motion), before)
    return self.renderer.fill(features, self.config.sampling_steps, 1.0)


def _dream_step(self, z, state, temperature, noise, decode_spread=1.0, feedback=None):
    uniform, normal, cells = noise
    (params, current, before), state = self.step(z, state)
    g, center = self.motion.sample_with_center(params, temperature, noise=(uniform, normal))
    features = self.renderer.features(z, center + decode_spread * (g - center), before)
    z = self.renderer.fill(features, self.config.sampling_steps, temperature, cells)
    if feedback is not None:
        z = feedback(z)
    return z, z, state


def _loss(self, inputs, targets, batch=None):
    window = torch.cat([inputs[:, :1], targets], 1)
    windows, steps = window.shape[:2]
    batch = batch or map_dream.StepBatch()
    summary_loss, g = self.summary.loss(window.flatten(0, 1), batch)
    g = g.view(windows, steps, -1)
    motion_loss = self.motion.loss(g[:, :-1], g[:, 1:], batch)
    t = 2 + batch.randint(steps - 3, (windows, PAIRS_PER_WINDOW), window.device)
    rows = torch.arange(windows, device=window.device)[:, None]
    pick = lambda x, at: x[rows, at].flatten(0, 1)   # noqa: E731
    previous, before = pick(window, t), pick(window, t - 1)
    with torch.no_grad():
        rounds = self.config.sampling_steps
        uniforms = batch.rand((len(previous), rounds, 1, *previous.shape[2:]), previous.device).transpose(0, 1)
        drawn = self.renderer.fill(self.renderer.features(before, pick(g, t), pick(window, t - 2)), rounds,
                                   self.config.temperature, uniforms)
        own = (batch.rand((len(previous), 1, 1, 1), previous.device) < OWN_MAPS).to(previous.dtype)
        previous = own * drawn.to(previous.dtype) + (1 - own) * previous
    features = self.renderer.features(previous, pick(g, t + 1), before)
    render_loss = self.renderer.loss(features, pick(window, t + 1), batch)
    return summary_loss / math.prod(window.shape[-2:]) + motion_loss / g.shape[-1] + render_loss


PATCHES = {"__init__": _init, "forward": _forward, "step": _step, "nll": _nll, "mean": _mean,
           "dream_step": _dream_step, "loss": _loss}
ORIGINAL = {name: getattr(MapDreamer, name) for name in PATCHES}


@contextlib.contextmanager
def two_maps():
    for name, function in PATCHES.items():
        setattr(MapDreamer, name, function)
    try:
        yield
    finally:
        for name, function in ORIGINAL.items():
            setattr(MapDreamer, name, function)


def retrain(run: Path, again: Path, seconds: float, prepare=None) -> None:
    """A copy of the finished `run` set back to the start of its dream-model stage with `seconds` left
    (`prepare`, if given, edits the copy first)."""
    shutil.copytree(run, again)
    if prepare is not None:
        prepare(again)
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
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--control", action="store_true", help="also retrain today's renderer")
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-two-") as work:
            if args.control:
                retrain(run, Path(work) / "control", args.seconds)
                print(json.dumps({"run": name, "variant": "control",
                                  **scored(Path(work) / "control", args.frames, seed, source)}), flush=True)
            with two_maps():
                retrain(run, Path(work) / "two", args.seconds)
                row = scored(Path(work) / "two", args.frames, seed, source)
            print(json.dumps({"run": name, "variant": "two maps", **row}), flush=True)


if __name__ == "__main__":
    main()
