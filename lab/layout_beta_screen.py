"""Screen: a more informative g, the summary VAE's KL weighted BETA instead of 1 (issue 19, River Raid's plain
river)

g's posterior spread (norm 3.9 on River Raid) is larger than a moving step of its means (1.5), so a step of the
layout is noise to the motion model and the renderer, and g cannot ask the renderer for a ship or a bend
(docs/results.md, "Why the targets are not met"). Training both on g's means changed nothing; here the summary
VAE itself keeps more of each map in g: its KL term (above its free bits) is weighted BETA. Dream model retrained
on a run's maps for `--seconds` by the product's stage, 2,000-frame dreams scored with `dreamvid eval`'s
metrics; controls: `lab/still_duration_screen.py` at c358f8b, retrained the same day.

    python lab/layout_beta_screen.py /tmp/res10-own/riverraid--default--seed0/run ... [--beta 0.1]

Screened 2026-12-07 (150 s, 2,000-frame dreams), control -> BETA 0.1: g's spread (median norm of its posterior
standard deviation) 3.68 / 3.64 / 3.94 -> 1.58 / 1.58 / 1.73 (River Raid seed 0 / 1, Enduro seed 0); River Raid
frozen share 0.96 / 0.98 -> 0.92 / 0.93, frame difference 0.048 / 0.035 -> 0.067 / 0.058; Enduro realism 1.11 ->
1.12, sharpness 0.57 -> 0.62, frame difference 0.90 -> 0.92, flow 0.78 -> 0.88. River Raid stays still with a g
whose spread is that of a moving step: its spread is not what hides the river's content. Not kept.
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

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models.map_dream import MapSummary

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
ORIGINAL_LOSS = MapSummary.loss
SPREAD: list[float] = []


@contextlib.contextmanager
def layout_beta(beta: float):
    def loss(self, maps, batch):
        mu, logvar = self.encode(maps)
        g = mu + (0.5 * logvar).exp() * batch.randn(mu.shape, mu.device)
        logits = self.decoder(self.from_g(g).view(-1, *self.bottom)).float()
        cross_entropy = batch.mean(F.cross_entropy(logits, self.fsq.code(maps), reduction="none").flatten(1).sum(1))
        kl = batch.mean((0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1))
        SPREAD.append(float((0.5 * logvar.detach()).exp().norm(dim=1).median()))
        return cross_entropy + beta * kl.clamp_min(self.free_bits * mu.shape[1]), g.detach()
    MapSummary.loss = loss
    try:
        yield
    finally:
        MapSummary.loss = ORIGINAL_LOSS


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
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-beta-") as work:
            SPREAD.clear()
            with layout_beta(args.beta):
                retrain(run, Path(work) / "beta", args.seconds)
            print(json.dumps({"run": name, "variant": f"summary KL x{args.beta}",
                              "g spread (last steps)": round(float(np.median(SPREAD[-50:])), 2),
                              **scored(Path(work) / "beta", args.frames, seed, source)}),
                  flush=True)


if __name__ == "__main__":
    main()
