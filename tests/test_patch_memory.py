"""dreamvid.models.patch_memory: the exact patches a source drew under each neighbourhood of codes, and the nearest
training patch everywhere else."""
from __future__ import annotations


import numpy as np
import torch

import dreamvid
from conftest import copy_run
from dreamvid.models.patch_memory import (PROBES, RING, NearestPatches, PatchMemory, cell_keys, cell_windows,
                                          to_cells)
from dreamvid.rundir import RunDir

LEVELS = (5, 5, 5)
CODES = 125


def _frames(rng, n: int, side: int = 16) -> np.ndarray:
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_a_remembered_neighbourhood_draws_the_patch_seen_most_often_there():
    rng = np.random.default_rng(0)
    codes = np.repeat(rng.integers(0, CODES, (1, 4, 4)), 4, axis=0)
    common, rare = _frames(rng, 1), _frames(rng, 1)
    memory = PatchMemory.build(codes, np.concatenate([common, rare, common, common]), LEVELS)
    decoded = _frames(rng, 1)
    assert np.array_equal(memory.apply(codes[:1], decoded), common)


def _changed_centre(codes: np.ndarray) -> np.ndarray:
    changed = codes.copy()
    changed[0, 1, 1] = (codes[0, 1, 1] + 1) % CODES
    return changed


def test_an_unseen_neighbourhood_takes_the_training_patch_whose_surroundings_are_nearest():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, CODES, (1, 4, 4))
    source = _frames(rng, 1)
    memory = PatchMemory.build(codes, source, LEVELS)
    # drawn near the source: each cell whose neighbourhood is new (the changed one and the four beside it) comes
    # back as the source's own patch, the nearest by its pixels
    near = np.clip(source.astype(int) + rng.integers(-3, 4, source.shape), 0, 255).astype(np.uint8)
    assert np.array_equal(memory.apply(_changed_centre(codes), near), source)
    # a memory from before the nearest table leaves those five cells as drawn
    state = {name: tensor for name, tensor in memory.state_dict().items() if not name.startswith("nearest.")}
    out = to_cells(PatchMemory.from_state_dict(state).apply(_changed_centre(codes), near)).reshape(4, 4, -1)
    src, drawn = to_cells(source).reshape(4, 4, -1), to_cells(near).reshape(4, 4, -1)
    for row in range(4):
        for col in range(4):
            touched = abs(row - 1) + abs(col - 1) <= 1
            assert np.array_equal(out[row, col], drawn[row, col] if touched else src[row, col]), (row, col)


def test_the_nearest_search_finds_every_training_cell_itself():
    """A training cell's key lies in its own list, the first one searched: the lists never hide an exact match."""
    rng = np.random.default_rng(4)
    frames = np.repeat(np.repeat(_frames(rng, 40, side=8), 4, axis=1), 4, axis=2)   # 32 px: blocks, as video has
    codes = rng.integers(0, CODES, (40, 8, 8))
    table = PatchMemory.build(codes, frames, LEVELS).nearest
    cells = np.arange(len(to_cells(frames)))
    assert np.array_equal(table.patches(frames, codes, cells), to_cells(frames))
    assert cell_windows(frames, cells[:1]).shape == (1, 4 + 2 * RING, 4 + 2 * RING, 3)


def test_the_list_search_returns_the_nearest_row_of_the_lists_it_probes():
    rng = np.random.default_rng(5)
    frames = np.repeat(np.repeat(_frames(rng, 40, side=8), 4, axis=1), 4, axis=2)
    built = PatchMemory.build(rng.integers(0, CODES, (40, 8, 8)), frames, LEVELS).nearest
    # one list more, empty, centred on a training key: the queries near it probe it and find nothing there
    centroids = torch.cat([built.centroids, built.keys[:1]])
    table = NearestPatches(built.windows, built.neighbours, centroids, np.r_[built.offsets, built.offsets[-1]], LEVELS)
    query = table.keys[::5] + 0.05 * torch.randn(len(table.keys[::5]), table.keys.shape[1],
                                                 generator=torch.Generator().manual_seed(0))
    found = table.nearest_rows(query)
    probes = (query @ centroids.T - (centroids ** 2).sum(1) / 2).topk(PROBES, 1).indices
    assert (probes == len(centroids) - 1).any()
    for key, lists, row in zip(query, probes.tolist(), found.tolist()):
        rows = torch.cat([torch.arange(table.offsets[i], table.offsets[i + 1]) for i in lists])
        best = ((table.keys[rows] - key) ** 2).sum(1).min()
        assert torch.isclose(((table.keys[row] - key) ** 2).sum(), best, rtol=1e-4)


def test_keys_tell_apart_every_neighbourhood_and_hash_beyond_64_bits():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, CODES, (50, 6, 6))
    keys = cell_keys(codes, "square", CODES)
    padded = np.pad(codes, ((0, 0), (1, 1), (1, 1)), constant_values=CODES)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2)).reshape(len(keys), 9)
    assert len(np.unique(keys)) == len(np.unique(windows, axis=0))
    wide = cell_keys(rng.integers(0, 100_000, (50, 6, 6)), "square", 100_000)   # 100,001^9 overflows 64 bits
    assert len(np.unique(wide)) == wide.size


def test_a_trained_spatial_run_decodes_through_the_memory_of_its_training_frames(cli_run, tmp_path):
    dreamer = dreamvid.load(cli_run.path, device="cpu")
    assert dreamer.memory is not None
    latents = dreamer.latents["mu"][:24]     # (the tiny run's dreams are noise: few of their cells are remembered)
    frames = dreamer.decode(latents)
    codes = dreamer.vae.quantise.code(latents).numpy()
    keys, patches = dreamer.memory.tables["square"]
    key = cell_keys(codes, "square", dreamer.memory.code_count)
    at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    hit = keys[at] == key
    assert hit.mean() > 0.5
    assert np.array_equal(to_cells(frames)[hit], patches[at[hit]])
    # every remembered patch is one the training frames hold; none is seen only in the held-out frames
    cache = dreamer.cache
    seen = {bytes(row) for start, stop in cache.split_ranges("train") for row in to_cells(cache.frames[start:stop])}
    held_out = {bytes(row) for start, stop in cache.split_ranges("val")
                for row in to_cells(cache.frames[start:stop])} - seen
    assert held_out and all(bytes(row) in seen for table in dreamer.memory.tables.values() for row in table[1])
    windows = dreamer.memory.nearest.windows[:, RING:-RING, RING:-RING]
    assert all(bytes(row) in seen for row in windows.reshape(len(windows), -1))
    # a run made before the memory decodes with the decoder alone
    old = RunDir(copy_run(cli_run, tmp_path))
    old.memory_path.unlink()
    plain = dreamvid.load(old.path, device="cpu")
    assert plain.memory is None
    assert not np.array_equal(plain.decode(latents), frames)


def test_the_memory_is_the_same_after_safetensors(tmp_path):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 5, (6, 4, 4))
    memory = PatchMemory.build(codes, _frames(rng, 6), LEVELS)
    run = RunDir(tmp_path / "run").create()
    run.save_memory(memory.state_dict())
    loaded = PatchMemory.from_state_dict(run.load_memory())
    decoded = _frames(rng, 6)
    assert np.array_equal(loaded.apply(codes[::-1].copy(), decoded), memory.apply(codes[::-1].copy(), decoded))
