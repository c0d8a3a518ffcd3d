"""Screen: which neighbourhoods should the patch memory keep? (issue 19)

Rescored whole, the memory took dream realism on the games from 2.23-3.07 to 0.50-1.46, but on `bikes` it went
2.07 / 1.47 -> 2.11 / 1.74, from 4-11% of cells redrawn: in live action a neighbourhood of codes seen once or twice
does not decide the patch, and an exemplar pasted between the decoder's patches leaves a seam. Kept here: only a
neighbourhood seen at least `count` times whose most common patch is at least `share` of them.

    python lab/patch_memory_dominance.py /tmp/res10-memory/*/run [--frames 2000]

Each run's memory is built again under each rule from its training frames; one dream (seed 0) of the run is decoded
through each and scored by `dreamvid eval`'s metrics.
"""
from __future__ import annotations

import argparse
import contextlib

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models import patch_memory
from dreamvid.models.patch_memory import PatchMemory, cell_keys, to_cells
from dreamvid.training.vae_stage import build_memory

RULES = {"all": (1, 0.0), "seen twice": (2, 0.0), "half": (1, 0.5), "twice, half": (2, 0.5), "thrice, 0.6": (3, 0.6)}
ORIGINAL = patch_memory._most_common


@contextlib.contextmanager
def rule(count: int, share: float):
    def most_common(keys, cells):
        table_keys, patches = ORIGINAL(keys, cells)
        sorted_keys = np.sort(keys)
        seen = np.searchsorted(sorted_keys, table_keys, side="right") - np.searchsorted(sorted_keys, table_keys)
        hashes = patch_memory._patch_hashes(cells)
        pairs = np.unique(np.stack([keys, hashes], 1), axis=0, return_counts=True)
        pair_index = {(int(k), int(h)): c for (k, h), c in zip(*pairs)}
        mode = np.array([pair_index[(int(k), int(h))]
                         for k, h in zip(table_keys, patch_memory._patch_hashes(patches))])
        keep = (seen >= count) & (mode >= share * seen)
        return table_keys[keep], patches[keep]

    patch_memory._most_common = most_common
    try:
        yield
    finally:
        patch_memory._most_common = ORIGINAL


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        latents = dreamer.session(seed=0).next_latents(args.frames)
        dreamer.memory = None
        plain = np.concatenate([dreamer.decode(latents[i:i + 256]) for i in range(0, len(latents), 256)])
        codes = dreamer.vae.quantise.code(latents).numpy()
        line = f"{run}: plain {figures(plain, source)}"
        for name, (count, share) in RULES.items():
            with rule(count, share):
                memory = build_memory(dreamer.vae, dreamer.cache, dreamer.latents["mu"])
            frames = memory.apply(codes, plain)
            hits = float((to_cells(frames) != to_cells(plain)).any(1).mean())
            line += f" | {name}: {figures(frames, source)} changed {hits:.2f}"
        print(line, flush=True)


def figures(frames: np.ndarray, source) -> str:
    metrics = score(frames, source=source)["metrics"]
    return (f"realism {metrics['realism']['ratio']:.3f} sharpness {metrics['sharpness']['ratio']:.3f} "
            f"diff {metrics['motion']['diff_ratio']:.3f}")


if __name__ == "__main__":
    main()
