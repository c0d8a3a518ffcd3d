"""Patch memory: the exact 4x4 patches a source draws under each neighbourhood of FSQ codes.

The spatial decoder draws every cell's patch with a small error: a periodic grain of a few grey levels, even on a
flat sky, and patch realism counts every such pixel (held-out reconstructions alone scored 2.1 on Enduro and 4.1
on River Raid against held-out frames; docs/results.md). Footage whose patches repeat exactly (games, animation,
screen recordings) does not need the decoder's guess: where a cell's neighbourhood of codes was seen in the
training frames, the memory draws the patch the source most often had there. It looks up the 3x3 neighbourhood
first, then the cross of five cells. Anywhere else (most of live action, where few neighbourhoods repeat) a cell
takes the training patch whose surroundings are nearest to its own: the 8x8 pixels around it as drawn so far and
its 3x3 codes (`NearestPatches`; single-video generators that draw only the source's patches, GPNN and VGPNN,
Granot et al. 2022 and Haim et al. 2022, reach its look the same way). Built from the training frames only, after
the VAE stage; a run without one decodes as before, one from before the nearest table with the exact tables only.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..neighbours import lloyd, nearest
from .spatial import CELL

NEIGHBOURHOODS = {           # (row, column) offsets of the cells a key is made of, the most specific first
    "square": tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
    "cross": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
}
MAX_CELLS = 1 << 22          # cells read when building (evenly spaced frames beyond): ~16,000 frames at 64 px
MAX_ENTRIES = 1 << 19        # entries kept per neighbourhood, the most often seen: 28 MB at most
_MIX = np.uint64(0x9E3779B97F4A7C15)   # odd: a key of many codes wraps around 64 bits and stays well spread
RING = 2                     # pixels around a cell that its nearest-patch key holds: where its patch meets the others
WINDOW = CELL + 2 * RING
# A nearest-patch key is a window's pixels (in [0, 1]) and, at this weight, its 3x3 codes' values (in [-1, 1]):
# by pixels alone the drawn frame's blur picks flat patches (docs/results.md: held-out sharpness 0.81 -> 0.87).
CODE_WEIGHT = 0.5
NEAREST_CELLS = 1 << 16      # training cells the nearest table keeps (a seeded draw beyond): 13 MB of windows
LISTS, PROBES = 256, 2       # the table is split into k-means lists; a cell searches the PROBES nearest to its key
FIT_KEYS = 8192              # keys the lists' k-means is fitted on, from random keys (k-means++ seeding took 1 GB here)


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


def cell_windows(frames: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, S, S, 3) -> (len(cells), WINDOW, WINDOW, 3): each of `cells` (indices into to_cells(frames); all by
    default) with RING pixels around it, edges repeated."""
    padded = np.pad(frames, ((0, 0), (RING, RING), (RING, RING), (0, 0)), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, (WINDOW, WINDOW), axis=(1, 2))[:, ::CELL, ::CELL]
    n, side = view.shape[:2]
    cells = np.arange(n * side * side) if cells is None else cells
    frame, row, column = cells // (side * side), cells // side % side, cells % side
    return view[frame, row, column].transpose(0, 2, 3, 1)


def neighbour_codes(codes: np.ndarray) -> np.ndarray:
    """Codes (N, H, W) -> (N*H*W, 9): each cell's 3x3 neighbourhood of codes (edges repeated)."""
    padded = np.pad(codes, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2)).reshape(-1, 9)


def code_values(codes: np.ndarray, levels: tuple[int, ...]) -> np.ndarray:
    """Codes (...) -> (..., len(levels)) FSQ values in [-1, 1] (spatial.FSQ.code_values, in numpy)."""
    strides = np.array([math.prod(levels[channel + 1:]) for channel in range(len(levels))])
    count, half = np.array(levels), np.array(levels) // 2
    return ((codes[..., None] // strides % count - half) / half).astype(np.float32)


def nearest_keys(windows: np.ndarray, neighbours: np.ndarray, levels: tuple[int, ...]) -> torch.Tensor:
    """Windows (K, WINDOW, WINDOW, 3) and 3x3 codes (K, 9) -> the keys (K, D) the nearest-patch search compares."""
    pixels = torch.from_numpy(windows.reshape(len(windows), -1)).float() / 255
    codes = torch.from_numpy(code_values(neighbours, levels).reshape(len(neighbours), -1))
    return torch.cat([pixels, CODE_WEIGHT * codes], 1)


class NearestPatches:
    """Training cells' windows (K, WINDOW, WINDOW, 3) and 3x3 codes (K, 9), grouped by k-means list of their keys
    (list l is rows offsets[l]:offsets[l + 1]). A query searches the PROBES lists nearest to it, not all K rows."""

    def __init__(self, windows: np.ndarray, neighbours: np.ndarray, centroids: torch.Tensor, offsets: np.ndarray,
                 levels: tuple[int, ...]):
        self.windows, self.neighbours, self.centroids = windows, neighbours, centroids
        self.offsets, self.levels = offsets, tuple(levels)
        self.keys = nearest_keys(windows, neighbours, self.levels)
        self._centroid_squares = (centroids ** 2).sum(1)
        squares = (self.keys ** 2).sum(1)
        # Each list's keys (transposed) and squared norms, sliced once: a studio viewer's few frames search most
        # lists, and per call the slicing cost as much as the arithmetic (docs/benchmarks.md).
        self._lists = [(squares[None, start:stop], self.keys[start:stop].T)
                       for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        self._starts = torch.from_numpy(offsets[:-1].astype(np.int64))

    @classmethod
    def build(cls, codes: np.ndarray, frames: np.ndarray, levels: tuple[int, ...]) -> NearestPatches:
        per_frame = codes[0].size   # from frames evenly spaced, four cells for each one kept
        rows = np.linspace(0, len(frames) - 1, min(len(frames), 4 * NEAREST_CELLS // per_frame)).astype(int)
        frames, codes = frames[rows], codes[rows]
        keep = np.sort(np.random.default_rng(0).permutation(len(rows) * per_frame)[:NEAREST_CELLS])
        windows, neighbours = cell_windows(frames, keep), neighbour_codes(codes)[keep]
        keys = nearest_keys(windows, neighbours, levels)
        shuffled = torch.randperm(len(keys), generator=torch.Generator().manual_seed(0))
        centroids = lloyd(keys[shuffled[:FIT_KEYS]], keys[shuffled[:LISTS]].clone(), iters=8)
        lists = nearest(keys, centroids)[1].numpy()
        order = np.argsort(lists, kind="stable")
        offsets = np.searchsorted(lists[order], np.arange(len(centroids) + 1))
        return cls(np.ascontiguousarray(windows[order]), np.ascontiguousarray(neighbours[order]), centroids,
                   offsets, levels)

    def patches(self, frames: np.ndarray, codes: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """The patch (len(cells), 48) of the training cell nearest to each of `cells` (indices into
        to_cells(frames)) by key: its window in `frames` and its 3x3 `codes`."""
        query = nearest_keys(cell_windows(frames, cells), neighbour_codes(codes)[cells], self.levels)
        inner = self.windows[self.nearest_rows(query).numpy(), RING:RING + CELL, RING:RING + CELL]
        return inner.reshape(len(cells), CELL * CELL * 3)

    def nearest_rows(self, query: torch.Tensor) -> torch.Tensor:
        """For each key of `query` (M, D), the row of the nearest key in the PROBES lists nearest to it."""
        closeness = query @ self.centroids.T - self._centroid_squares / 2   # the nearer a list, the larger
        probes = closeness.topk(min(PROBES, len(self.centroids)), 1).indices
        groups, order = probes.flatten().sort(stable=True)      # (query, probe) pairs, by the list they search
        asking = query[order // probes.shape[1]]
        distances, rows, first = [], [], 0
        for group, count in enumerate(torch.bincount(groups, minlength=len(self._lists)).tolist()):
            if count:
                squares, keys_t = self._lists[group]
                if keys_t.shape[1]:
                    distance, row = torch.addmm(squares, asking[first:first + count], keys_t, alpha=-2).min(1)
                else:   # a list no training cell fell in
                    distance, row = torch.full((count,), float("inf")), torch.zeros(count, dtype=torch.long)
                distances.append(distance)
                rows.append(row)
                first += count
        pairs = torch.empty_like(order)
        pairs[order] = torch.arange(len(order))                # each pair's place in the sorted order
        distance = torch.cat(distances)[pairs].view(probes.shape)
        index = (torch.cat(rows) + self._starts[groups])[pairs].view(probes.shape)
        return index.gather(1, distance.argmin(1, keepdim=True)).squeeze(1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"nearest.windows": torch.from_numpy(self.windows.copy()),
                "nearest.neighbours": torch.from_numpy(self.neighbours.astype(np.int32)),
                "nearest.centroids": self.centroids, "nearest.offsets": torch.from_numpy(self.offsets.astype(np.int64)),
                "nearest.levels": torch.tensor(self.levels)}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> NearestPatches | None:
        """The table `state_dict` wrote, or None where a memory has none (made before it existed)."""
        if "nearest.windows" not in state:
            return None
        windows, neighbours = state["nearest.windows"].numpy(), state["nearest.neighbours"].numpy()
        centroids, offsets = state["nearest.centroids"].float(), state["nearest.offsets"].numpy()
        levels = tuple(state["nearest.levels"].tolist())
        if (windows.dtype != np.uint8 or windows.shape[1:] != (WINDOW, WINDOW, 3)
                or neighbours.shape != (len(windows), 9) or len(offsets) != len(centroids) + 1
                or offsets[-1] != len(windows) or np.any(np.diff(offsets) < 0)
                or centroids.shape[1:] != (3 * WINDOW * WINDOW + 9 * len(levels),)):
            raise ValueError(f"a nearest table of windows {windows.shape} {windows.dtype}, codes {neighbours.shape}, "
                             f"{len(centroids)} lists")
        return cls(windows, neighbours, centroids, offsets, levels)


class PatchMemory:
    """For each neighbourhood shape, sorted keys (K,) and the patch (K, 48) the source most often drew there; and the
    nearest-patch table for every other cell (None in a memory made before it)."""

    def __init__(self, tables: dict[str, tuple[np.ndarray, np.ndarray]], code_count: int,
                 nearest_patches: NearestPatches | None = None):
        self.tables, self.code_count, self.nearest = tables, code_count, nearest_patches

    @classmethod
    def build(cls, codes: np.ndarray, frames: np.ndarray, levels: tuple[int, ...]) -> PatchMemory:
        """From training frames (N, S, S, 3) uint8 and their codes (N, S/4, S/4) over FSQ `levels`."""
        frames, code_count = np.asarray(frames), math.prod(levels)
        cells = to_cells(frames)
        tables = {shape: _most_common(cell_keys(codes, shape, code_count), cells) for shape in NEIGHBOURHOODS}
        return cls(tables, code_count, NearestPatches.build(codes, frames, levels))

    def apply(self, codes: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Frames (N, S, S, 3) with every cell whose neighbourhood of `codes` (N, S/4, S/4) is remembered redrawn
        as remembered, then every other cell as its nearest training cell."""
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
        missed = np.flatnonzero(~done)
        if self.nearest is not None and len(missed):
            cells[missed] = self.nearest.patches(from_cells(cells, len(frames)), codes, missed)
        return from_cells(cells, len(frames))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"code_count": torch.tensor(self.code_count)}
        for shape, (keys, patches) in self.tables.items():
            state[f"{shape}.keys"] = torch.from_numpy(keys.view(np.int64).copy())   # safetensors has no uint64
            state[f"{shape}.patches"] = torch.from_numpy(patches.copy())
        return {**state, **(self.nearest.state_dict() if self.nearest is not None else {})}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> PatchMemory:
        """The memory `state_dict` wrote; ValueError for tensors it did not write."""
        try:
            tables = {shape: (state[f"{shape}.keys"].numpy().view(np.uint64), state[f"{shape}.patches"].numpy())
                      for shape in NEIGHBOURHOODS}
            code_count = int(state["code_count"])
            nearest_patches = NearestPatches.from_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"not a patch memory ({error})") from error
        for keys, patches in tables.values():
            if patches.dtype != np.uint8 or patches.shape != (len(keys), CELL * CELL * 3):
                raise ValueError(f"patches of shape {patches.shape} and type {patches.dtype}, for {len(keys)} keys")
        if nearest_patches is not None and math.prod(nearest_patches.levels) != code_count:
            raise ValueError(f"a nearest table over {nearest_patches.levels} levels, for {code_count} codes")
        return cls(tables, code_count, nearest_patches)


def evenly_spaced_rows(rows: np.ndarray, cells_per_frame: int) -> np.ndarray:
    """At most MAX_CELLS cells' worth of `rows` (frame indices), evenly spaced."""
    keep = max(1, MAX_CELLS // cells_per_frame)
    return rows if len(rows) <= keep else rows[np.linspace(0, len(rows) - 1, keep).astype(int)]
