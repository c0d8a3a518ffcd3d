"""Lab screen (issue 19, stickiness): does classifier-free guidance on g make the renderer draw the layout the motion
model asks for, so that dreams move like the source and leave the scene they start in?

Measured first (400-frame dreams of the seed-0 runs): the motion model's layout centers move 1.1-1.4 a step, like
the source's g (0.9-2.1), but the maps the renderer draws move 0.3-0.5 a step and stay 1.4 from the g they were
drawn for; over 400 frames their g spreads 1.6-1.8 against the source's 4.0-4.7. The renderer copies the map
before and barely follows g: consecutive maps share ~88% of their cells, so g is worth little to its loss.

Here the renderer trains with g replaced by a learned "no layout" vector for a share of pairs, and dreams with
log p = log p(. | map, g) + (w - 1) (log p(. | map, g) - log p(. | map, none)), renormalised: w = 1 is the plain
renderer, w > 1 amplifies what g changes (the copy bonus cancels in the difference). The dream model alone is
retrained on a run's maps by the product's stage for `--seconds`, then dreams `--frames` frames per w, scored with
`dreamvid eval`'s metrics.

    python lab/renderer_guidance_screen.py /tmp/res10/enduro--default--seed0/run ... --weights 1 2 3
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
from dreamvid.models.map_dream import MapDreamer, MapRenderer

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
ORIGINAL = {"init": MapRenderer.__init__, "features": MapRenderer.features, "dream_step": MapDreamer.dream_step}


@contextlib.contextmanager
def guided(dropped: float, weight: float):
    """The renderer trained with g dropped for a `dropped` share of pairs, dreaming with guidance `weight`."""
    def __init__(self, fsq, size, width):
        ORIGINAL["init"](self, fsq, size, width)
        self.no_layout = nn.Parameter(torch.zeros(size))

    def features(self, previous, g):
        if self.training:
            drop = torch.rand(len(g), 1, device=g.device) < dropped
            g = torch.where(drop, self.no_layout.to(g.dtype).expand_as(g), g)
        return ORIGINAL["features"](self, previous, g)

    def dream_step(self, z, state, temperature, noise, decode_spread=1.0, feedback=None):
        uniform, normal, cells = noise
        (params, _), state = self.step(z, state)
        g, center = self.motion.sample_with_center(params, temperature, noise=(uniform, normal))
        g = center + decode_spread * (g - center)
        both = self.renderer.features(torch.cat([z, z]), torch.cat([g, self.renderer.no_layout.expand_as(g)]))
        z = guided_fill(self.renderer, both, self.config.sampling_steps, temperature, cells, weight)
        if feedback is not None:
            z = feedback(z)
        return z, z, state

    MapRenderer.__init__, MapRenderer.features, MapDreamer.dream_step = __init__, features, dream_step
    try:
        yield
    finally:
        MapRenderer.__init__, MapRenderer.features = ORIGINAL["init"], ORIGINAL["features"]
        MapDreamer.dream_step = ORIGINAL["dream_step"]


@torch.no_grad()
def guided_fill(renderer, both, rounds, temperature, uniforms, weight):
    """MapRenderer.fill with each round's log-probabilities guided; `both` stacks the features given g and
    given no layout."""
    batch, _, height, width = both.shape
    batch //= 2
    cells = height * width
    known = both.new_zeros(batch, len(renderer.fsq.levels), height, width)
    hidden = both.new_ones(batch, 1, height, width)
    start = renderer.head_start(both)
    for index in range(rounds):
        given, blind = renderer.log_probs(start, torch.cat([known, known]), torch.cat([hidden, hidden])).chunk(2)
        log_p = F.log_softmax(given + (weight - 1) * (given - blind), 1)
        codes = renderer._draw(log_p, temperature, uniforms[index])
        confidence = log_p.gather(1, codes.unsqueeze(1)).squeeze(1)
        still_hidden = math.floor(cells * math.cos(math.pi / 2 * (index + 1) / rounds))
        confidence = confidence.masked_fill(hidden[:, 0] == 0, float("inf")).flatten(1)
        keep = confidence.topk(cells - still_hidden, 1).indices
        now_hidden = torch.ones_like(confidence).scatter_(1, keep, 0.0).view_as(hidden)
        known = known + renderer.fsq.code_values(codes).to(known.dtype) * (hidden - now_hidden)
        hidden = now_hidden
    return known


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
    parser.add_argument("--dropped", type=float, default=0.15, help="share of pairs trained without g")
    parser.add_argument("--weights", nargs="+", type=float, default=[1.0, 2.0, 3.0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-guidance-") as work:
            with guided(args.dropped, 1.0):
                retrain(run, Path(work) / "guided", args.seconds)
            for weight in args.weights:
                with guided(args.dropped, weight):
                    row = scored(Path(work) / "guided", args.frames, seed, source)
                print(json.dumps({"run": name, "variant": f"g dropped {args.dropped}, w {weight}", **row}), flush=True)


if __name__ == "__main__":
    main()
