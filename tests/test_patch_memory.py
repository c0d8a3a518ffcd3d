"""dreamvid.models.patch_memory: the exact patches a source drew under each neighbourhood of codes."""
from __future__ import annotations


import numpy as np

import dreamvid
from conftest import copy_run
from dreamvid.models.patch_memory import PatchMemory, cell_keys, to_cells
from dreamvid.rundir import RunDir

CODES = 125


def _frames(rng, n: int, side: int = 16) -> np.ndarray:
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_a_remembered_neighbourhood_draws_the_patch_seen_most_often_there():
    rng = np.random.default_rng(0)
    codes = np.repeat(rng.integers(0, CODES, (1, 4, 4)), 4, axis=0)
    common, rare = _frames(rng, 1), _frames(rng, 1)
    memory = PatchMemory.build(codes, np.concatenate([common, rare, common, common]), CODES)
    decoded = _frames(rng, 1)
    assert np.array_equal(memory.apply(codes[:1], decoded), common)


def test_an_unseen_neighbourhood_keeps_the_decoders_patch_unless_its_cross_was_seen():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, CODES, (1, 4, 4))
    source = _frames(rng, 1)
    memory = PatchMemory.build(codes, source, CODES)
    changed = codes.copy()
    changed[0, 1, 1] = (codes[0, 1, 1] + 1) % CODES
    decoded = _frames(rng, 1)
    out = to_cells(memory.apply(changed, decoded)).reshape(4, 4, -1)
    src, dec = to_cells(source).reshape(4, 4, -1), to_cells(decoded).reshape(4, 4, -1)
    for row in range(4):
        for col in range(4):
            touched = abs(row - 1) + abs(col - 1) <= 1      # the changed cell and the four that share an edge
            assert np.array_equal(out[row, col], dec[row, col] if touched else src[row, col]), (row, col)


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
    # a run made before the memory decodes with the decoder alone
    old = RunDir(copy_run(cli_run, tmp_path))
    old.memory_path.unlink()
    plain = dreamvid.load(old.path, device="cpu")
    assert plain.memory is None
    assert not np.array_equal(plain.decode(latents), frames)


def test_the_memory_is_the_same_after_safetensors(tmp_path):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 5, (6, 4, 4))
    memory = PatchMemory.build(codes, _frames(rng, 6), CODES)
    run = RunDir(tmp_path / "run").create()
    run.save_memory(memory.state_dict())
    loaded = PatchMemory.from_state_dict(run.load_memory())
    decoded = _frames(rng, 6)
    assert np.array_equal(loaded.apply(codes[::-1].copy(), decoded), memory.apply(codes[::-1].copy(), decoded))
