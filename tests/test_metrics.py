"""The pure metric functions and the reference dreams of dreamvid.evaluation.metrics: frame arrays in, numbers out."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamvid.evaluation import metrics as M
from synthetic import moving_shapes

SIZE = 64


def test_psnr_ssim_identical_and_degraded():
    frames = moving_shapes(6, SIZE, SIZE)
    same = M.psnr_ssim(frames, frames.copy())
    assert same["psnr"] == pytest.approx(100.0)  # identical frames: capped "infinite" PSNR
    assert same["ssim"] == pytest.approx(1.0, abs=1e-4)
    noisy = np.clip(frames.astype(np.int16) + np.random.default_rng(0).integers(-20, 21, frames.shape), 0, 255)
    worse = M.psnr_ssim(noisy.astype(np.uint8), frames)
    assert 15 < worse["psnr"] < 40 and worse["ssim"] < 0.95
    assert M.frame_psnr(noisy.astype(np.uint8), frames).mean() == pytest.approx(worse["psnr"], rel=1e-5)


def test_wasserstein_and_js():
    a = np.random.default_rng(0).normal(size=2000)
    assert M.wasserstein(a, a) == pytest.approx(0.0)
    assert M.wasserstein(a, a + 3.0) == pytest.approx(3.0, rel=1e-3)
    assert M.js_divergence([1, 2, 3], [1, 2, 3]) == pytest.approx(0.0)
    assert M.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(1)
    q, b = rng.normal(size=(50, 12)).astype(np.float32), rng.normal(size=(300, 12)).astype(np.float32)
    d, i = M.nearest(torch.from_numpy(q), torch.from_numpy(b), chunk=7)
    brute = np.sqrt(((q[:, None] - b[None]) ** 2).mean(-1))
    assert np.array_equal(i.numpy(), brute.argmin(1))
    assert np.allclose(d.numpy(), brute.min(1), atol=1e-4)


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (100, 4)), rng.normal(5, 0.1, (100, 4))]).astype(np.float32)
    c = M.kmeans(torch.from_numpy(x), k=2, seed=0)
    assert sorted(np.round(c.numpy().mean(1)).tolist()) == [0.0, 5.0]


def test_patches_of_bank_frames_are_found_exactly():
    frames = moving_shapes(20, SIZE, SIZE, seed=2)
    bank = M.patch_bank(frames)  # every frame is in the bank (fewer than BANK_FRAMES)
    _, own = M.patch_distances(frames, bank, seed=0)
    noise = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    _, other = M.patch_distances(noise, bank, seed=0)
    assert own.max() < 0.5 and other.min() > 10  # exact matches, up to float32 rounding of the matrix products


def test_motion_values_within_sequences():
    still = np.repeat(moving_shapes(1, SIZE, SIZE), 5, axis=0)
    moving = moving_shapes(5, SIZE, SIZE, seed=1)
    diffs = M.consecutive_diffs([still, moving])
    assert len(diffs) == 8 and np.all(diffs[:4] == 0) and np.all(diffs[4:] > 0)  # no pair across the two
    assert len(M.flow_magnitudes([still, moving])) == 8
    assert np.all(M.flicker_values([still]) == 0) and len(M.flicker_values([still, moving])) == 6


def test_copy_runs_follow_the_source_and_not_a_frozen_frame():
    frames = moving_shapes(30, SIZE, SIZE, seed=4)
    feats = M.frame_features(frames)
    nxt = M.next_index([frames])
    tau = 1.0

    def runs(dream_idx):
        d = feats[dream_idx]
        nn_dist, nn_idx = M.nearest(d, feats)
        return M.copy_runs(d, feats, nxt, nn_idx.numpy(), nn_dist.numpy(), tau)

    assert runs(np.arange(5, 25)).tolist() == [20] * 20      # a replay is one run
    assert runs(np.full(10, 7)).tolist() == [1] * 10         # a frozen frame replays nothing
    assert runs(np.r_[0:5, 20:25]).tolist() == [5] * 10      # a jump starts a new run


def test_reference_dreams_shapes_and_determinism():
    train = moving_shapes(180, SIZE, SIZE, seed=3)
    refs = M.reference_dreams(train, 300, seed=1, fps=24)
    assert set(refs) == set(M.REFERENCE_NAMES) == set(M.REFERENCE_DREAMS)
    assert all(r.shape == (300, SIZE, SIZE, 3) and r.dtype == np.uint8 for r in refs.values())
    assert np.array_equal(refs["replay"][:len(train)], train)  # replay loops the source
    assert np.array_equal(refs["texture"], M.reference_dream("texture", train, 300, seed=1, fps=24))
    assert len(np.unique(refs["frozen"].reshape(300, -1), axis=0)) == 1
    with pytest.raises(ValueError):
        M.reference_dream("nope", train, 10)


def test_texture_jumps_away_from_the_natural_successor():
    frames = moving_shapes(120, SIZE, SIZE, seed=6)
    idx = M.texture_indices([frames], 2000, np.random.default_rng(0), first=0, fps=4.0)
    steps = np.diff(idx)
    jumps = steps[steps != 1]
    assert len(jumps) > 20  # segments of 8 frames on average at 4 fps
    assert np.all(np.abs(jumps - 1) > M.TEXTURE_GAP)  # never to a frame near the one that comes next anyway
    assert idx.min() >= 0 and idx.max() < len(frames)
