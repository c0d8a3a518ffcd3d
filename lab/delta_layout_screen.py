"""Screen: g describes the change from one map to the next, not the next map alone (issue 19, stickiness)

Today g summarises the next map by itself (a 32-number VAE of its cells), and the renderer draws the next map
from the last one and that g: g says where the layout is, not which cells change, so the renderer must guess the
change, and its best guess is to keep a cell (River Raid freezes) or to fill an uncertain one with a fragment
(Enduro's broken road edges, 0.68-0.78 of its nearest source frames' sharpness). Delta-IRIS (Micheli et al.
2024) encodes each frame *given the frames before*, so its tokens describe only what changed and its decoder
draws the rest from the past. Here g is such a transition latent: an encoder sees (this map, next map) and gives
g; the renderer p(next | this, g) is its decoder, trained through g (a conditional VAE, free bits 0.5 a number
keep 16 nats of change in g); the motion model learns the sequence of g's and, dreaming, draws the next one.
Each drawn transition is encoded again before the motion model sees it, as today. The dream model alone is
retrained on a run's maps by the product's stage for `--seconds`, then dreams `--frames` frames scored with
`dreamvid eval`'s metrics (control: `lab/two_maps_screen.py --control` at ef84426, same protocol).

    python lab/delta_layout_screen.py /tmp/res10-own/riverraid--default--seed0/run ... [--seconds 150]

Screened 2026-12-07 (150 s, 2,000-frame dreams; controls retrained alike in lab/joint_mixture_screen.py):
River Raid seed 0 / 1 frozen share 0.96 / 0.92 (control) -> 0.99 / 0.99 at T 0.7, 0.25 / 0.15 at T 1.0 with realism
1.61 / 1.58 (control at 0.7: 0.49 / 0.57); Enduro seed 0 realism 1.11 -> 1.12, frame difference 0.90 -> 0.81, flow
0.78 -> 0.75. Given the source's own transitions, the renderer follows it as today's does (after 300 steps 95% of
River Raid's cells agree with the source): what freezes is the free-running motion model. Not kept.
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
from torch import nn

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models import map_dream
from dreamvid.models.map_dream import OWN_MAPS, PAIRS_PER_WINDOW, MapDreamer

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]


def _init(self, config, latent_shape, levels):
    ORIGINAL["__init__"](self, config, latent_shape, levels)
    first = self.summary.encoder[0]
    self.summary.encoder[0] = nn.Conv2d(2 * len(levels), first.out_channels, 4, 2, 1)


def _transition(self, before, after):
    """g's mean and log-variance for each step before -> after (..., C, H, W)."""
    lead = before.shape[:-3]
    pair = torch.cat([before, after], -3).reshape(-1, 2 * before.shape[-3], *before.shape[-2:])
    mu, logvar = self.summary.encode(pair)
    return mu.view(*lead, -1), logvar.view(*lead, -1)


def _befores(z, state):
    first = z[:, :1] if state is None else state[1].unsqueeze(1)
    return torch.cat([first, z[:, :-1]], 1)


def _forward(self, z, state=None, batch=None):
    g = _transition(self, _befores(z, state), z)[0]
    params, motion_state = self.motion(g, None if state is None else state[0], batch)
    return (params, z), (motion_state, z[:, -1])


def _step(self, z, state=None):
    before = z if state is None else state[1]
    params, motion_state = self.motion.step(_transition(self, before, z)[0], None if state is None else state[0])
    return (params, z), (motion_state, z)


def _nll(self, params, target):
    motion, current = params
    g = _transition(self, current, target)[0]
    lead = target.shape[:-3]
    flat = lambda x: x.reshape(-1, *x.shape[len(lead):])   # noqa: E731
    cells = self.renderer.nll(self.renderer.features(flat(current), flat(g)), flat(target))
    return self.motion.nll(motion, g) + cells.view(lead)


def _mean(self, params):
    motion, current = params
    features = self.renderer.features(current, self.motion.mean(motion))
    return self.renderer.fill(features, self.config.sampling_steps, 1.0)


def _dream_step(self, z, state, temperature, noise, decode_spread=1.0, feedback=None):
    uniform, normal, cells = noise
    (params, _), state = self.step(z, state)
    g, center = self.motion.sample_with_center(params, temperature, noise=(uniform, normal))
    features = self.renderer.features(z, center + decode_spread * (g - center))
    z = self.renderer.fill(features, self.config.sampling_steps, temperature, cells)
    if feedback is not None:
        z = feedback(z)
    return z, z, state


def _loss(self, inputs, targets, batch=None):
    window = torch.cat([inputs[:, :1], targets], 1)
    windows, steps = window.shape[:2]
    batch = batch or map_dream.StepBatch()
    mu, logvar = _transition(self, window[:, :-1], window[:, 1:])          # (B, T, size): transition t -> t+1
    g = mu + (0.5 * logvar).exp() * batch.randn(mu.shape, mu.device)
    kl = batch.mean((0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(-1).mean(1))
    kl = kl.clamp_min(self.summary.free_bits * mu.shape[-1])
    motion_loss = self.motion.loss(g[:, :-1].detach(), g[:, 1:].detach(), batch)
    t = 1 + batch.randint(steps - 2, (windows, PAIRS_PER_WINDOW), window.device)
    rows = torch.arange(windows, device=window.device)[:, None]
    pick = lambda x, at: x[rows, at].flatten(0, 1)   # noqa: E731
    previous = pick(window, t)
    with torch.no_grad():
        rounds = self.config.sampling_steps
        uniforms = batch.rand((len(previous), rounds, 1, *previous.shape[2:]), previous.device).transpose(0, 1)
        drawn = self.renderer.fill(self.renderer.features(pick(window, t - 1), pick(g, t - 1).detach()), rounds,
                                   self.config.temperature, uniforms)
        own = (batch.rand((len(previous), 1, 1, 1), previous.device) < OWN_MAPS).to(previous.dtype)
        previous = own * drawn.to(previous.dtype) + (1 - own) * previous
    features = self.renderer.features(previous, pick(g, t))
    render_loss = self.renderer.loss(features, pick(window, t + 1), batch)
    cells = math.prod(window.shape[-2:])
    return render_loss + kl / cells + motion_loss / g.shape[-1]


PATCHES = {"__init__": _init, "forward": _forward, "step": _step, "nll": _nll, "mean": _mean,
           "dream_step": _dream_step, "loss": _loss}
ORIGINAL = {name: getattr(MapDreamer, name) for name in PATCHES}


@contextlib.contextmanager
def delta_layout():
    for name, function in PATCHES.items():
        setattr(MapDreamer, name, function)
    try:
        yield
    finally:
        for name, function in ORIGINAL.items():
            setattr(MapDreamer, name, function)


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


def scored(again: Path, frames: int, seed: int, source, temperatures) -> dict:
    dreamer = dreamvid.load(again, device="cpu")
    row = {}
    for temperature in temperatures:
        dream = np.stack(list(dreamer.dream(frames=frames, seed=seed, temperature=temperature)))
        metrics = score(dream, source=source)["metrics"]
        row.update({f"T{temperature} {group[:4]}.{key[:6]}": round(float(metrics[group][key]), 3) for group, key in KEYS})
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7])
    parser.add_argument("--control", action="store_true", help="also retrain today's dream model")
    parser.add_argument("--keep", type=Path, help="keep the retrained runs under this folder")
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-delta-") as work:
            root = args.keep or Path(work)
            if args.control:
                retrain(run, root / f"{name}-control", args.seconds)
                print(json.dumps({"run": name, "variant": "control",
                                  **scored(root / f"{name}-control", args.frames, seed, source, args.temperatures)}),
                      flush=True)
            with delta_layout():
                retrain(run, root / f"{name}-delta", args.seconds)
                row = scored(root / f"{name}-delta", args.frames, seed, source, args.temperatures)
            print(json.dumps({"run": name, "variant": "delta", **row}), flush=True)


if __name__ == "__main__":
    main()
