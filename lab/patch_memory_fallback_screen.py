"""Screen: a patch for every cell: the patch memory falls back to the cell's own code (issue 19, realism on live
action)

The patch memory draws the source's own patch where a cell's 3x3 (else cross-shaped) neighbourhood of codes was
seen in the training frames; on live action few neighbourhoods repeat (4-11% of `bikes`' dream cells), so the
decoder draws nearly everything, with its grain, and `bikes` and carphone score patch realism 1.4-1.9 against
`worldmodels`' 0.6-0.8 (docs/results.md). Here a third level catches every other cell, by its code alone:
"common", the patch the source most often drew for that code (as the other levels), or "mean", the mean of the
patches the source drew for it. No retraining: the own-maps runs, the memory rebuilt from their training frames,
2,000-frame dreams scored with `dreamvid eval`'s metrics, the run's own memory as the control.

    python lab/patch_memory_fallback_screen.py /tmp/res10-own/*/run

Screened 2026-12-07 on 300-frame dreams of the seed-0 runs, and stopped there: control -> "mean" (-> "common")
patch realism carphone 1.37 -> 2.33 (2.97), `bikes` 1.75 -> 1.70 with its frame difference 0.78 -> 0.38, Enduro
1.19 -> 2.86 (its frame difference 0.95 -> 1.77). A code alone does not say which patch: one patch per code is a
blocky mosaic that swaps whole patches as codes flip. Not kept.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models import patch_memory
from dreamvid.models.patch_memory import PatchMemory, evenly_spaced_rows, to_cells
from dreamvid.training.vae_stage import _range_indices

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
CELL_ALONE = ((0, 0),)    # the third level's neighbourhood: a run's saved memory has none, so it is added after load


def training_codes(dreamer) -> tuple[np.ndarray, np.ndarray]:
    """The training frames the run's memory was built from (N, S, S, 3) and their codes (N, S/4, S/4)."""
    mu = dreamer.latents["mu"]
    rows = evenly_spaced_rows(_range_indices(dreamer.cache.split_ranges("train")), int(np.prod(mu.shape[-2:])))
    return dreamer.cache.frames[rows], dreamer.vae.quantise.code(mu[torch.from_numpy(rows)]).numpy()


def with_fallback(dreamer, kind: str) -> PatchMemory:
    frames, codes = training_codes(dreamer)
    codes_count = dreamer.vae.quantise.codes
    memory = PatchMemory.build(codes, frames, codes_count)
    if kind == "mean":
        cells, flat = to_cells(frames).astype(np.float64), codes.ravel()
        keys = np.unique(flat)
        means = np.stack([cells[flat == key].mean(0) for key in keys]).round().astype(np.uint8)
        memory.tables["cell"] = (keys.astype(np.uint64), means)
    return memory


def scored(dreamer, frames: int, seed: int, source) -> dict:
    dream = np.stack(list(dreamer.dream(frames=frames, seed=seed)))
    metrics = score(dream, source=source)["metrics"]
    return {f"{group[:4]}.{key[:6]}": round(float(metrics[group][key]), 3) for group, key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", default=["control", "common", "mean"])
    args = parser.parse_args()
    for run in args.runs:
        patch_memory.NEIGHBOURHOODS.pop("cell", None)
        dreamer = dreamvid.load(run, device="cpu")
        patch_memory.NEIGHBOURHOODS["cell"] = CELL_ALONE
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        own = dreamer.memory
        for variant in args.variants:
            dreamer.memory = own if variant == "control" else with_fallback(dreamer, variant)
            print(json.dumps({"run": name, "variant": variant, **scored(dreamer, args.frames, seed, source)}),
                  flush=True)


if __name__ == "__main__":
    main()
