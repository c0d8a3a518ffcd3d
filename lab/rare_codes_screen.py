"""Screen: the renderer's loss weighted toward rare codes (issue 19, fragmented road edges and River Raid's plain
river)

Two of the dreams' faults look like one: the renderer under-draws what is rare. Enduro's road edges come out in
fragments (a dreamed frame is 0.68-0.78 as sharp as its nearest source frame), and River Raid's dream drifts to a
plain river (18 distinct codes a map against the source's 30; lab/still_duration_screen.py at d788213). Its cells
are drawn at 0.7, which favours a cell's likeliest code, and a line or a ship is a rare code next to water,
road or grass. Here each hidden cell's cross-entropy is weighted by its target code's frequency in the training
maps to the power -ALPHA (normalised to mean 1 over the training cells), so a rare code costs more to miss. Dream
model retrained on a run's maps for `--seconds` by the product's stage; harness and scoring:
lab/still_duration_screen.py.

    python lab/rare_codes_screen.py /tmp/res10-own/riverraid--default--seed0/run ... [--alpha 0.5] [--control]

Screened 2026-12-07 (150 s, 2,000-frame dreams; River Raid and Enduro seed 0 controls from
still_duration_screen.py the same day, the others retrained beside it with --control), control -> ALPHA 0.2
(-> 0.5):
- River Raid seed 0 / 1: realism 0.43 / 0.23 -> 1.25 / 2.52 (7.17 / 11.06), sharpness 0.72 / 0.70 -> 0.78 / 0.89,
  frame difference 0.048 / 0.035 -> 0.16 / 0.37 (1.30 / 1.81), frozen share 0.96 / 0.98 -> 0.64 / 0.15 (0.00),
  coverage 0.13 / 0.06 -> 0.13 / 0.06 (0.69 / 0.94).
- Enduro seed 0 / 1: realism 1.11 / 1.11 -> 1.36 / 1.63 (2.32), sharpness 0.57 / 0.52 -> 0.65 / 0.65 (0.71),
  frame difference 0.90 / 0.77 -> 1.01 / 1.01 (1.65), flow 0.78 / 0.74 -> 0.80 / 0.67.
- carphone / `bikes` seed 0: realism 1.53 / 1.86 -> 1.51 / 1.90, sharpness 0.92 / 1.22 -> 0.83 / 1.10.
The games' dreams get sharper and move, and lose their look in step, as with hotter cells: not kept.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
from pathlib import Path

import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source
from dreamvid.models.map_dream import MapRenderer
from dreamvid.training.rnn_stage import LatentWindows
from still_duration_screen import retrain, scored

WEIGHTS: dict[str, torch.Tensor] = {}
ORIGINAL_LOSS, ORIGINAL_WINDOWS_INIT = MapRenderer.loss, LatentWindows.__init__


def _windows_init(self, latents, seq_len, device):
    ORIGINAL_WINDOWS_INIT(self, latents, seq_len, device)
    train = torch.cat([self.mu[a:b] for a, b in self.train_ranges])
    WEIGHTS["pending"] = train


def code_weights(renderer: MapRenderer, alpha: float) -> torch.Tensor:
    """Per code, its frequency in the training maps to the power -alpha, mean 1 over the training cells."""
    codes = renderer.fsq.code(WEIGHTS["pending"]).flatten()
    freq = torch.bincount(codes, minlength=renderer.fsq.codes).float()
    weight = (freq / freq.sum()).clamp_min(1e-6) ** -alpha
    return weight / (weight[codes].mean())


def _loss(self, features, target, batch):
    if "weight" not in WEIGHTS:
        WEIGHTS["weight"] = code_weights(self, WEIGHTS["alpha"]).to(target.device)
        print(json.dumps({"weights": [round(float(q), 2) for q in WEIGHTS["weight"].quantile(
            torch.tensor([0.0, 0.5, 1.0]))]}), flush=True)
    maps, _, height, width = target.shape
    share = torch.cos(math.pi / 2 * batch.rand((maps, 1, 1, 1), target.device))
    hidden = (batch.rand((maps, 1, height, width), target.device) < share).float()
    log_p = self.log_probs(self.head_start(features), target, hidden)
    codes = self.fsq.code(target)
    nll = -log_p.gather(1, codes.unsqueeze(1)) * WEIGHTS["weight"][codes].unsqueeze(1)
    hidden_cells = batch.sum(hidden.flatten(1).sum(1)).detach().clamp_min(1)
    return batch.sum((nll * hidden).flatten(1).sum(1)) / hidden_cells


@contextlib.contextmanager
def rare_codes(alpha: float):
    WEIGHTS.clear()
    WEIGHTS["alpha"] = alpha
    MapRenderer.loss, LatentWindows.__init__ = _loss, _windows_init
    try:
        yield
    finally:
        MapRenderer.loss, LatentWindows.__init__ = ORIGINAL_LOSS, ORIGINAL_WINDOWS_INIT


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--control", action="store_true", help="also retrain today's dream model")
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-rare-") as work:
            if args.control:
                retrain(run, (args.keep or Path(work)) / f"{name}-control", args.seconds)
                print(json.dumps({"run": name, "variant": "control", **scored(
                    (args.keep or Path(work)) / f"{name}-control", args.frames, seed, source)}), flush=True)
            again = (args.keep or Path(work)) / f"{name}-rare{args.alpha}"
            with rare_codes(args.alpha):
                retrain(run, again, args.seconds)
            result = scored(again, args.frames, seed, source)
            print(json.dumps({"run": name, "variant": f"rare codes {args.alpha}", **result}), flush=True)


if __name__ == "__main__":
    main()
