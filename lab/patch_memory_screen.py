"""Screen: a patch memory after the spatial VAE's decoder, for footage whose patches repeat exactly.

Question: the decoder draws every 4x4 patch with a small error (a periodic grain on Enduro's flat sky), and patch
realism counts it: held-out reconstructions alone score 2.1 (Enduro) and 4.1 (River Raid) against held-out
frames. A game draws the same patches again and again. If a cell's 3x3 neighbourhood of codes was seen in
training, the patch most often drawn there in the source is exactly right; is drawing it, and the decoder's patch
only elsewhere, worth keeping?

    python lab/patch_memory_screen.py /tmp/res10/enduro--default--seed0/run ... [--frames 2000]

For each run: held-out reconstructions and one dream (seed 0) of the run as trained, decoded plainly and through
the memory (3x3 keys; then the cross of 5 cells; then the cell alone), scored by `dreamvid eval`'s metrics.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from dreamvid.dreaming import load
from dreamvid.evaluation import metrics as M
from dreamvid.evaluation.scoring import prepare_source, realism_ratio, score

torch.set_grad_enabled(False)
CELL = 4
KEYS = ("realism.ratio", "sharpness.ratio", "motion.diff_ratio", "motion.flow_ratio", "coverage.visited_share")


SHAPES = {"square": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
          "cross": [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], "cell": [(0, 0)]}


def keys(codes: np.ndarray, shape: str, codes_count: int) -> np.ndarray:
    """(N, H, W) codes -> (N, H, W) int64 keys of each cell's neighbourhood `shape` (off the map: `codes_count`)."""
    n, h, w = codes.shape
    padded = np.pad(codes, ((0, 0), (1, 1), (1, 1)), constant_values=codes_count).astype(np.int64)
    key = np.zeros((n, h, w), np.int64)
    for dy, dx in SHAPES[shape]:
        key = key * (codes_count + 1) + padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    return key


def patches(frames: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) -> (N, S/4, S/4, 48) uint8."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return F.pixel_unshuffle(t, CELL).permute(0, 2, 3, 1).numpy().astype(np.uint8)


def unpatch(cells: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(cells).permute(0, 3, 1, 2).float()
    return F.pixel_shuffle(t, CELL).permute(0, 2, 3, 1).numpy().astype(np.uint8)


def build(codes: np.ndarray, frames: np.ndarray, shape: str, codes_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys and, for each, the patch drawn most often under it."""
    key = keys(codes, shape, codes_count).ravel()
    rows = np.concatenate([key[:, None].view(np.uint8).reshape(-1, 8), patches(frames).reshape(len(key), -1)], 1)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    unique_keys = unique[:, :8].copy().view(np.int64).ravel()
    order = np.lexsort((-counts, unique_keys))
    first = order[np.r_[True, unique_keys[order][1:] != unique_keys[order][:-1]]]
    return unique_keys[first], unique[first, 8:]


def apply(memories, codes: np.ndarray, frames: np.ndarray, codes_count: int) -> tuple[np.ndarray, float]:
    """Frames with every remembered cell replaced; the share of cells replaced. `memories` largest radius first."""
    cells = patches(frames).reshape(-1, frames.shape[-1] * CELL * CELL)
    done = np.zeros(len(cells), bool)
    for shape, (table_keys, table_patches) in memories:
        key = keys(codes, shape, codes_count).ravel()
        pos = np.clip(np.searchsorted(table_keys, key), 0, len(table_keys) - 1)
        hit = (table_keys[pos] == key) & ~done
        cells[hit] = table_patches[pos[hit]]
        done |= hit
    side = frames.shape[1] // CELL
    return unpatch(cells.reshape(len(frames), side, side, -1)), float(done.mean())


def figures(metrics: dict) -> str:
    return " ".join(f"{k.split('.')[1][:5]} {metrics[k.split('.')[0]][k.split('.')[1]]:.3f}" for k in KEYS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    for run in args.runs:
        dreamer = load(run)
        fsq, count = dreamer.rnn.fsq, dreamer.rnn.fsq.codes
        train, val = dreamer.cache.split("train"), dreamer.cache.split("val")
        trainc, valc = (np.concatenate([np.asarray(part) for part in parts]) for parts in (train, val))
        src = prepare_source(train, val, dreamer.fps)
        code = lambda frames: np.concatenate([fsq.code(dreamer.encode(frames[i:i + 256])[0]).numpy()   # noqa: E731
                                              for i in range(0, len(frames), 256)])
        train_codes = code(trainc)
        tables = {shape: (shape, build(train_codes, trainc, shape, count)) for shape in SHAPES}
        variants = {"square": [tables["square"]], "square+cross": [tables["square"], tables["cross"]],
                    "square+cross+cell": [tables["square"], tables["cross"], tables["cell"]]}
        recon_codes = code(valc)
        recon = dreamer.decode(dreamer.encode(valc)[0])
        latents = dreamer.session(seed=0).next_latents(args.frames)
        dream = np.concatenate([dreamer.decode(latents[i:i + 256]) for i in range(0, len(latents), 256)])
        dream_codes = fsq.code(latents).numpy()
        print(f"{run}\n  plain: recon realism {realism_ratio(recon, src):.3f} | dream "
              f"{figures(score(dream, source=src)['metrics'])}", flush=True)
        for name, memories in variants.items():
            recon_m, recon_hits = apply(memories, recon_codes, recon, count)
            dream_m, dream_hits = apply(memories, dream_codes, dream, count)
            sharp = M.laplacian_var(recon_m).mean() / M.laplacian_var(valc).mean()
            print(f"  {name}: recon realism {realism_ratio(recon_m, src):.3f} sharpness {sharp:.3f} hits "
                  f"{recon_hits:.2f} | dream {figures(score(dream_m, source=src)['metrics'])} hits {dream_hits:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
