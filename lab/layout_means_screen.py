"""Screen: the motion model and the renderer trained on g's means, not samples (issue 19, River Raid's freezing)

g's posterior spread is larger than its motion: on River Raid (seed 1) its standard deviation has a norm of 3.9
while the means of consecutive moving frames are 1.5 apart (and the same map's g is exactly still). The motion
model learns next g's drawn with that spread, and the renderer learns to draw the next map from g's with it, so
a step of the layout's own size is noise to both. Here both learn from the means (the summary VAE still learns
from samples); dreams already feed the motion model the drawn map's mean, and the held-out NLL already scores
means. Harness and scoring: lab/still_duration_screen.py.

    python lab/layout_means_screen.py /tmp/res10-own/riverraid--default--seed0/run ... [--with-count]

Screened 2026-12-07 (150 s, 2,000-frame dreams; controls from still_duration_screen.py the same day), control ->
g means (-> with the still count, cap 32): River Raid seed 0 / 1 frozen share 0.96 / 0.98 -> 0.99 / 0.94 (0.84 /
0.96), frame difference 0.048 / 0.035 -> 0.029 / 0.060 (0.11 / 0.06); Enduro seed 0 realism 1.11 -> 1.06,
sharpness 0.57 -> 0.61, frame difference 0.90 -> 0.84, flow 0.78 -> 0.82. River Raid unmoved, Enduro within a
run's spread: not kept.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

import torch.nn.functional as F

import dreamvid
from dreamvid.evaluation.scoring import prepare_source
from dreamvid.models.map_dream import MapSummary
from still_duration_screen import retrain, scored, still_duration

ORIGINAL_LOSS = MapSummary.loss


def _loss(self, maps, batch):
    mu, logvar = self.encode(maps)
    g = mu + (0.5 * logvar).exp() * batch.randn(mu.shape, mu.device)
    logits = self.decoder(self.from_g(g).view(-1, *self.bottom)).float()
    cross_entropy = batch.mean(F.cross_entropy(logits, self.fsq.code(maps), reduction="none").flatten(1).sum(1))
    kl = batch.mean((0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1))
    return cross_entropy + kl.clamp_min(self.free_bits * mu.shape[1]), mu.detach()


@contextlib.contextmanager
def layout_means():
    MapSummary.loss = _loss
    try:
        yield
    finally:
        MapSummary.loss = ORIGINAL_LOSS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--with-count", action="store_true", help="with lab/still_duration_screen.py's count")
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-means-") as work:
            again = (args.keep or Path(work)) / f"{name}-means"
            with layout_means(), (still_duration() if args.with_count else contextlib.nullcontext()):
                retrain(run, again, args.seconds)
                result = scored(again, args.frames, seed, source)
            variant = "g means" + (" + still count" if args.with_count else "")
            print(json.dumps({"run": name, "variant": variant, **result}), flush=True)


if __name__ == "__main__":
    main()
