"""Lab (issue 19): a dream's nearest-patch cell keeps the training patch it took the frame before while its 3x3
codes stay the same (a session's state), against searching again every frame.

The nearest patch is searched by the 8x8 pixels around a cell as drawn and its 3x3 codes, and the decoder's pixels
move a little from frame to frame even where no code changed: among the missed cells whose 3x3 codes did not
change, 6% (games), 13% (carphone) and 29% (`bikes`) took another patch than the frame before (200-frame dreams of
the 2026-12-07 seed-0 runs). The question was whether that flicker is what lifts carphone's flow (0.94 -> 1.27 with
the nearest patch). Screen: 96-frame dreams (dream seed 1) of those runs, memories rebuilt with the table; the
share of cells whose patch changed from one frame to the next, searched again -> kept:

    python lab/nearest_hysteresis.py /tmp/res12/{bikes,carphone,enduro}--default--seed0/run

Results (2026-12-07, dev CPU): `bikes` 0.735 -> 0.709, carphone 0.314 -> 0.293, Enduro 0.129 -> 0.128 of the
cells change a frame; 2.9% / 2.8% / 0.1% of the cells drawn otherwise. Most of a dream's changed cells are cells
whose codes changed: keeping the pick takes 2 points of carphone's 31% away. Not scored whole (a change this
small in what is drawn is not expected to move a figure beyond a seed's spread); not kept.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

import dreamvid
from dreamvid.dreaming import tensor_to_frames
from dreamvid.models.patch_memory import (CELL, RING, cell_keys, cell_windows, from_cells, nearest_keys,
                                          neighbour_codes, to_cells)
from dreamvid.training.vae_stage import build_memory

def exact_hits(memory, codes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """PatchMemory.apply's exact part: redraws `cells` in place, returns which cells it redrew."""
    done = np.zeros(len(cells), bool)
    for shape, (keys, patches) in memory.tables.items():
        if not len(keys):
            continue
        key = cell_keys(codes, shape, memory.code_count)
        at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        hit = (keys[at] == key) & ~done
        cells[hit] = patches[at[hit]]
        done |= hit
    return done


def apply_kept(memory, codes: np.ndarray, frames: np.ndarray, carry: dict) -> np.ndarray:
    n, per = len(frames), codes[0].size
    cells = to_cells(frames).copy()
    missed = ~exact_hits(memory, codes, cells).reshape(n, per)
    around = neighbour_codes(codes).reshape(n, per, 9)
    same = np.zeros((n, per), bool)
    if "around" in carry:
        same[0] = (around[0] == carry["around"]).all(-1) & (carry["pick"] >= 0) & missed[0]
    same[1:] = (around[1:] == around[:-1]).all(-1) & missed[1:] & missed[:-1]
    search = np.flatnonzero((missed & ~same).ravel())
    picks = np.full((n, per), -1, np.int64)
    if len(search):
        table = memory.nearest
        query = nearest_keys(cell_windows(from_cells(cells, n), search), neighbour_codes(codes)[search], table.levels)
        picks.ravel()[search] = table.nearest_rows(query).numpy()
    for t in range(n):
        before = picks[t - 1] if t else carry.get("pick")
        if before is not None:
            picks[t][same[t]] = before[same[t]]
    flat = np.flatnonzero(missed.ravel())
    inner = memory.nearest.windows[picks.ravel()[flat], RING:RING + CELL, RING:RING + CELL]
    cells[flat] = inner.reshape(len(flat), CELL * CELL * 3)
    carry["around"], carry["pick"] = around[-1], picks[-1]
    return from_cells(cells, n)


def changed_share(frames: np.ndarray) -> float:
    cells = to_cells(frames).reshape(len(frames), -1, CELL * CELL * 3)
    return float((cells[1:] != cells[:-1]).any(-1).mean())


def screen(run: str, frames: int = 96) -> None:
    dreamer = dreamvid.load(run, device="cpu")
    memory = build_memory(dreamer.vae, dreamer.cache, dreamer.latents["mu"])
    z = dreamer.session(seed=1).next_latents(frames)
    codes = dreamer.vae.quantise.code(z).numpy()
    with torch.no_grad():
        raw = tensor_to_frames(dreamer.vae.decode(z))
    searched, kept = memory.apply(codes, raw), apply_kept(memory, codes, raw, {})
    differ = (to_cells(searched) != to_cells(kept)).any(1).mean()
    print(f"{run}: cells changed a frame {changed_share(searched):.3f} -> {changed_share(kept):.3f}, "
          f"drawn otherwise {differ:.3f}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for path in sys.argv[1:]:
        screen(path)
