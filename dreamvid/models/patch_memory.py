"""Patch memory: the exact 4x4 patches a source draws under each neighbourhood of FSQ codes.

The spatial decoder draws every cell's patch with a small error: a periodic grain of a few grey levels, even on a
flat sky, and patch realism counts every such pixel (held-out reconstructions alone scored 2.1 on Enduro and 4.1
on River Raid against held-out frames; docs/results.md). Footage whose patches repeat exactly (games, animation,
screen recordings) does not need the decoder's guess: where a cell's neighbourhood of codes was seen in the
training frames, the memory draws the patch the source most often had there. It looks up the 3x3 neighbourhood
first, then the cross of five cells; anywhere else (most of live action) the decoder's patch stays. Built from
the training frames only, after the VAE stage; a run without one decodes as before.
"""
from __future__ import annotations

import numpy as np
import torch

from .spatial import CELL

NEIGHBOURHOODS = {           # (row, column) offsets of the cells a key is made of, the most specific first
    "square": tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
    "cross": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
}
MAX_CELLS = 1 << 22          # cells read when building (evenly spaced frames beyond): ~16,000 frames at 64 px
MAX_ENTRIES = 1 << 19        # entries kept per neighbourhood, the most often seen: 28 MB at most
_MIX = np.uint64(0x9E3779B97F4A7C15)   # odd: a key of many codes wraps around 64 bits and stays well spread


def cell_keys(codes: np.ndarray, shape: str, code_count: int) -> np.ndarray:
    """Codes (N, H, W) -> uint64 keys (N*H*W,) of each cell's neighbourhood `shape`; off the map counts as a code
    of its own. Exact while (code_count + 1) ** cells fits in 64 bits (125 codes: 3x3), hashed beyond."""
    n, h, w = codes.shape
    offsets = NEIGHBOURHOODS[shape]
    base = np.uint64(code_count + 1) if (code_count + 1) ** len(offsets) < 2 ** 64 else _MIX
    padded = np.pad(codes.astype(np.uint64), ((0, 0), (1, 1), (1, 1)), constant_values=code_count)
    key = np.zeros((n, h, w), np.uint64)
    with np.errstate(over="ignore"):
        for dy, dx in offsets:
            key = key * base + padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    return key.ravel()


def to_cells(frames: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) -> (N*H*W, 48): each cell's patch as one row."""
    n, s = frames.shape[:2]
    side = s // CELL
    return frames.reshape(n, side, CELL, side, CELL, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, CELL * CELL * 3)


def from_cells(cells: np.ndarray, n: int) -> np.ndarray:
    side = int(round((len(cells) / n) ** 0.5))
    return np.ascontiguousarray(cells.reshape(n, side, side, CELL, CELL, 3).transpose(0, 1, 3, 2, 4, 5)
                                .reshape(n, side * CELL, side * CELL, 3))


def _patch_hashes(cells: np.ndarray) -> np.ndarray:
    """(M, 48) uint8 -> (M,) uint64, equal for equal patches."""
    words = np.ascontiguousarray(cells).view(np.uint64)
    hashes = np.zeros(len(cells), np.uint64)
    with np.errstate(over="ignore"):
        for column in range(words.shape[1]):
            hashes = (hashes ^ words[:, column]) * _MIX
    return hashes


def _most_common(keys: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys (at most MAX_ENTRIES, the most often seen) and, for each, its most common patch."""
    hashes = _patch_hashes(cells)
    order = np.lexsort((hashes, keys))
    key, patch = keys[order], hashes[order]
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]) | (patch[1:] != patch[:-1])])
    counts = np.diff(np.r_[starts, len(key)])
    pair_keys, pair_rows = key[starts], order[starts]
    best = np.lexsort((-counts, pair_keys))
    firsts = np.r_[True, pair_keys[best][1:] != pair_keys[best][:-1]]
    chosen = best[firsts]
    seen = np.add.reduceat(counts[best], np.flatnonzero(firsts))   # how often each key was seen at all
    if len(chosen) > MAX_ENTRIES:
        chosen = np.sort(chosen[np.argsort(-seen, kind="stable")[:MAX_ENTRIES]])
    return pair_keys[chosen], cells[pair_rows[chosen]]


class PatchMemory:
    """For each neighbourhood shape, sorted keys (K,) and the patch (K, 48) the source most often drew there."""

    def __init__(self, tables: dict[str, tuple[np.ndarray, np.ndarray]], code_count: int):
        self.tables, self.code_count = tables, code_count

    @classmethod
    def build(cls, codes: np.ndarray, frames: np.ndarray, code_count: int) -> PatchMemory:
        """From training frames (N, S, S, 3) uint8 and their codes (N, S/4, S/4)."""
        cells = to_cells(np.asarray(frames))
        return cls({shape: _most_common(cell_keys(codes, shape, code_count), cells) for shape in NEIGHBOURHOODS},
                   code_count)

    def apply(self, codes: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Frames (N, S, S, 3) with every cell whose neighbourhood of `codes` (N, S/4, S/4) is remembered redrawn
        as remembered."""
        cells = to_cells(frames).copy()
        done = np.zeros(len(cells), bool)
        for shape, (keys, patches) in self.tables.items():
            if not len(keys):
                continue
            key = cell_keys(codes, shape, self.code_count)
            at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            hit = (keys[at] == key) & ~done
            cells[hit] = patches[at[hit]]
            done |= hit
        return from_cells(cells, len(frames))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"code_count": torch.tensor(self.code_count)}
        for shape, (keys, patches) in self.tables.items():
            state[f"{shape}.keys"] = torch.from_numpy(keys.view(np.int64).copy())   # safetensors has no uint64
            state[f"{shape}.patches"] = torch.from_numpy(patches.copy())
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> PatchMemory:
        """The memory `state_dict` wrote; ValueError for tensors it did not write."""
        try:
            tables = {shape: (state[f"{shape}.keys"].numpy().view(np.uint64), state[f"{shape}.patches"].numpy())
                      for shape in NEIGHBOURHOODS}
            code_count = int(state["code_count"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"not a patch memory ({error})") from error
        for keys, patches in tables.values():
            if patches.dtype != np.uint8 or patches.shape != (len(keys), CELL * CELL * 3):
                raise ValueError(f"patches of shape {patches.shape} and type {patches.dtype}, for {len(keys)} keys")
        return cls(tables, code_count)


def evenly_spaced_rows(rows: np.ndarray, cells_per_frame: int) -> np.ndarray:
    """At most MAX_CELLS cells' worth of `rows` (frame indices), evenly spaced."""
    keep = max(1, MAX_CELLS // cells_per_frame)
    return rows if len(rows) <= keep else rows[np.linspace(0, len(rows) - 1, keep).astype(int)]
