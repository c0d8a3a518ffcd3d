"""Weight-free video metrics on plain uint8 frame arrays, and the reference dreams that calibrate them.

Everything here takes frames as uint8 arrays (N, S, S, 3) (or lists of such arrays, one per source
sequence) and needs no model and no file, so a model's dream and the reference dreams built from the source
go through exactly the same code (`scoring.score`). docs/metrics.md defines every number and the sampling used.

Units: frame and patch distances are root-mean-square differences in grey levels (0..255); flow is in
pixels per frame at the evaluation size.
"""
from __future__ import annotations

import math
from functools import cached_property

import cv2
import numpy as np
import torch

from ..neighbours import kmeans as _kmeans, nearest

FEATURE_SIDE = 16          # whole-frame features: area-averaged to 16x16 RGB (768 numbers)
FROZEN_DIFF = 0.5          # a consecutive pair whose mean absolute difference is below this (grey levels) is frozen
REALISM_FRAMES = 256       # frames drawn at random from a video for patch realism ...
REALISM_QUERIES = 2048     # ... and patches drawn from them in all (at least 1, at most all grid positions, per frame)
BANK_FRAMES = 128          # training frames (evenly spaced) whose every patch forms the nearest-neighbour bank
FLOW_PAIRS = 256           # consecutive-frame pairs (evenly spaced) given to Farneback
KMEANS_K = 16
KMEANS_ITERS = 20
HIST_BINS = 40
REFERENCE_DREAMS = {       # the reference dreams (reference_dream), in report order, and what each is
    "replay": "the source itself",
    "shuffled": "its frames in random order",
    "frozen": "one frame repeated",
    "blurred": "a blurred replay",
    "texture": "a video texture jumping between similar frames",
}
REFERENCE_NAMES = tuple(REFERENCE_DREAMS)
TEXTURE_GAP = 8            # a video texture's jump lands at least this many frames from the natural successor
TEXTURE_CHOICES = 3        # ... on one of this many cheapest targets


# ---------------------------------------------------------------------------------------------- helpers


def as_sequences(frames) -> list[np.ndarray]:
    """An array (N, S, S, 3) or a list of them -> a list of non-empty uint8 arrays."""
    if isinstance(frames, np.ndarray):
        seqs = [frames]
    else:
        seqs = [np.asarray(s) for s in frames]
    seqs = [s for s in seqs if len(s)]
    for s in seqs:
        if s.ndim != 4 or s.shape[-1] != 3 or s.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, S, S, 3), got {s.dtype} {s.shape}")
    return seqs


def concat(seqs: list[np.ndarray]) -> np.ndarray:
    return seqs[0] if len(seqs) == 1 else np.concatenate(seqs)


def next_index(seqs: list[np.ndarray]) -> np.ndarray:
    """For each frame of the concatenated sequences, the index of the frame after it in its sequence, or -1."""
    nxt = np.arange(1, sum(map(len, seqs)) + 1)
    nxt[np.cumsum([len(s) for s in seqs]) - 1] = -1
    return nxt


def evenly(n: int, k: int) -> np.ndarray:
    """Up to k indices spread evenly over range(n)."""
    if n <= k:
        return np.arange(n)
    return np.round(np.linspace(0, n - 1, k)).astype(np.int64)


def to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float (N, 3, S, S) in grey levels (via a copy: `frames` may be a read-only memmap)."""
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float()


def frame_features(frames: np.ndarray, side: int = FEATURE_SIDE) -> torch.Tensor:
    """Area-averaged side x side RGB thumbnails (OpenCV INTER_AREA on float frames: an exact box average when
    side divides the frame size), flattened: float (N, side*side*3) in grey levels."""
    out = np.empty((len(frames), side * side * 3), np.float32)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA).reshape(-1)
    return torch.from_numpy(out)


def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact RMS distance between matching rows."""
    return ((a - b) ** 2).mean(1).sqrt()


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between two samples (the area between their quantile functions)."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if not len(a) or not len(b):
        return float("nan")
    q = np.linspace(0, 1, max(len(a), len(b), 2) * 2 + 1)[1:-1:2]  # midpoints of a fine grid
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = same histogram, 1 = disjoint)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p, q = p / max(p.sum(), 1e-12), q / max(q.sum(), 1e-12)
    m = (p + q) / 2
    return max(0.0, 0.5 * _kl_bits(p, m) + 0.5 * _kl_bits(q, m))


def _kl_bits(a: np.ndarray, b: np.ndarray) -> float:
    """Kullback-Leibler divergence of histogram `a` from `b` in bits (b > 0 wherever a > 0)."""
    mask = a > 0
    return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))


def histogram(values: np.ndarray, edges: np.ndarray) -> list[float]:
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return (counts / max(counts.sum(), 1)).tolist()


def ratio(a: float, b: float, floor: float = 1e-6) -> float:
    return float(a / max(b, floor))


# ---------------------------------------------------------------------------------------------- pixel metrics


def psnr_ssim(pred: np.ndarray, target: np.ndarray, chunk: int = 256) -> dict:
    """Mean per-frame PSNR (dB, capped at 100 for identical frames) and SSIM (torchmetrics, data range 1)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim_fn

    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {target.shape}")
    psnrs, ssims = [], []
    for i in range(0, len(pred), chunk):
        a, b = to_float(pred[i:i + chunk]) / 255, to_float(target[i:i + chunk]) / 255
        psnrs.append(_psnr(a, b))
        ssims.append(ssim_fn(a, b, data_range=1.0, reduction="none").reshape(-1))
    return {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean())}


def frame_psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB (capped at 100)."""
    return _psnr(to_float(pred) / 255, to_float(target) / 255).numpy()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB of images in [0, 1]; the error floor 1e-10 caps identical frames at 100 dB."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def laplacian_var(frames: np.ndarray) -> np.ndarray:
    """Per-frame variance of the Laplacian (3x3 aperture) of the grey image, in grey levels squared."""
    return np.array([cv2.meanStdDev(cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F))[1][0, 0] ** 2
                     for f in frames])


def luminance(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean grey level (Rec. 601 weights)."""
    if not len(frames):
        return np.zeros(0)
    return np.array([cv2.mean(f)[:3] for f in frames]) @ np.array([0.299, 0.587, 0.114])


def consecutive_diffs(seqs: list[np.ndarray], chunk: int = 256) -> np.ndarray:
    """Mean absolute difference (grey levels, over pixels and channels) of each consecutive pair within sequences."""
    out = []
    for s in seqs:
        for i in range(0, len(s) - 1, chunk):
            a = np.asarray(s[i:i + chunk + 1]).astype(np.int16)
            out.append(np.abs(a[1:] - a[:-1]).reshape(len(a) - 1, -1).mean(axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def flow_magnitudes(seqs: list[np.ndarray], pairs: int = FLOW_PAIRS) -> np.ndarray:
    """Mean Farneback optical-flow magnitude (px/frame) for up to `pairs` evenly spaced consecutive pairs."""
    owners = [(k, i) for k, s in enumerate(seqs) for i in range(len(s) - 1)]
    if not owners:
        return np.zeros(0)
    out = []
    side = seqs[0].shape[1]
    win = max(5, side // 8 + 1)
    for j in evenly(len(owners), pairs):
        k, i = owners[j]
        a = cv2.cvtColor(seqs[k][i], cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(seqs[k][i + 1], cv2.COLOR_RGB2GRAY)
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, win, 3, 5, 1.1, 0)
        out.append(float(np.sqrt((flow ** 2).sum(-1)).mean()))
    return np.array(out)


def flicker_values(seqs: list[np.ndarray]) -> np.ndarray:
    """|L(t+1) - 2 L(t) + L(t-1)| of per-frame mean luminance, within sequences (grey levels)."""
    out = []
    for s in seqs:
        if len(s) >= 3:
            lum = luminance(s)
            out.append(np.abs(lum[2:] - 2 * lum[1:-1] + lum[:-2]))
    return np.concatenate(out) if out else np.zeros(0)


# ---------------------------------------------------------------------------------------------- patches


def _patch_grid(frames: np.ndarray) -> np.ndarray:
    """A view (n, rows, cols, 3, p, p) of every patch on the stride grid (no copy); patches of side/8 px (at least 4)
    at a stride of half that (8 and 4 at 64 px)."""
    p = max(4, frames.shape[1] // 8)
    s = max(1, p // 2)
    view = np.lib.stride_tricks.sliding_window_view(frames, (p, p), axis=(1, 2))
    return view[:, ::s, ::s]


def patch_bank(frames: np.ndarray, n_frames: int = BANK_FRAMES) -> torch.Tensor:
    """Every patch (on the stride grid) of up to `n_frames` evenly spaced frames, as rows in [0, 255]."""
    grid = _patch_grid(np.ascontiguousarray(frames[evenly(len(frames), n_frames)]))
    return torch.from_numpy(grid.reshape(-1, int(np.prod(grid.shape[3:]))).astype(np.float32))


def patch_distances(frames: np.ndarray, bank: torch.Tensor, *, n_frames: int = REALISM_FRAMES,
                    n_queries: int = REALISM_QUERIES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw up to `n_frames` frames at random (without replacement) and about `n_queries` random grid patches
    from them, the same number per frame; return (sorted frame indices, each frame's mean distance from its
    patches to their nearest bank patch). Random rather than evenly spaced frames, so a replay of the source
    does not land exactly on the bank's frames."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(frames), min(n_frames, len(frames)), replace=False))
    grid = _patch_grid(np.ascontiguousarray(frames[idx]))
    n, rows, cols = grid.shape[:3]
    k = min(rows * cols, max(1, math.ceil(n_queries / n)))
    pos = np.stack([rng.choice(rows * cols, k, replace=False) for _ in range(n)])  # (n, k)
    picked = grid[np.arange(n)[:, None], pos // cols, pos % cols]  # (n, k, 3, p, p)
    queries = torch.from_numpy(picked.reshape(n * k, -1).astype(np.float32))
    d, _ = nearest(queries, bank)
    return idx, d.view(n, k).mean(1).numpy()


# ---------------------------------------------------------------------------------------------- k-means


def kmeans(x: torch.Tensor, k: int = KMEANS_K, iters: int = KMEANS_ITERS, seed: int = 0) -> torch.Tensor:
    """The clusters coverage counts (dreamvid.neighbours.kmeans at this module's k and iterations)."""
    return _kmeans(x, k, iters, seed)


# ---------------------------------------------------------------------------------------------- copying


def copy_runs(dream_feats: torch.Tensor, src_feats: torch.Tensor, nxt: np.ndarray, nn_idx: np.ndarray,
              nn_dist: np.ndarray, threshold: float) -> np.ndarray:
    """Length of the replay run each dream frame belongs to, built greedily (see docs/metrics.md).

    A frame starts a run when it is a copy (nearest source frame within `threshold`); the next dream frame
    extends it when it is within `threshold` of the source frame after the one matched so far, and at least
    as close to it as to that matched frame (so a frozen dream does not "replay").
    """
    n = len(dream_feats)
    run_id = np.full(n, -1)
    lengths = []
    p, run = -1, -1
    for i in range(n):
        extended = False
        if run >= 0 and nxt[p] >= 0:
            q = nxt[p]
            x = dream_feats[i]
            d_next = float(((x - src_feats[q]) ** 2).mean().sqrt())
            if d_next <= threshold:
                d_same = float(((x - src_feats[p]) ** 2).mean().sqrt())
                extended = d_next <= d_same
        if extended:
            p = q
            lengths[run] += 1
        elif nn_dist[i] <= threshold:
            run, p = len(lengths), int(nn_idx[i])
            lengths.append(1)
        else:
            run, p = -1, -1
        run_id[i] = run
    lengths = np.array(lengths, dtype=np.int64)
    return np.where(run_id >= 0, lengths[np.maximum(run_id, 0)] if len(lengths) else 0, 0)


# ---------------------------------------------------------------------------------------------- source


class Source:
    """What scoring needs from the source, computed once and shared by the dream and every reference."""

    def __init__(self, train, heldout, fps: float, seed: int = 0):
        self.train, self.heldout = as_sequences(train), as_sequences(heldout)
        self.fps, self.seed = fps, seed
        if sum(len(s) for s in self.train) < 2:
            raise ValueError("the source needs at least 2 training frames")
        if sum(len(s) for s in self.heldout) < 1:
            raise ValueError("the source needs at least 1 held-out frame")
        self.frames = concat(self.train)
        self.feats = frame_features(self.frames)
        self.nxt = next_index(self.train)
        has_next = self.nxt >= 0
        consecutive = rms(self.feats[has_next], self.feats[self.nxt[has_next]]).numpy()
        self.copy_threshold = float(np.median(consecutive)) if len(consecutive) else 0.0
        self.bank = patch_bank(self.frames)
        held = concat(self.heldout)
        _, d = patch_distances(held, self.bank, seed=self.seed + 1)
        self.heldout_patch = float(d.mean())
        self.centroids = kmeans(self.feats, seed=self.seed)
        self.assign = nearest(self.feats, self.centroids)[1].numpy()
        self.cluster_hist = np.bincount(self.assign, minlength=len(self.centroids)).astype(np.float64)
        self.diffs = consecutive_diffs(self.train)
        self.flows = flow_magnitudes(self.train)
        self.flicker = float(flicker_values(self.train).mean()) if len(self.frames) >= 3 else 0.0
        self.lap = laplacian_var(self.frames)
        self.lum = luminance(self.frames)
        sample = self.frames[evenly(len(self.frames), 512)].astype(np.float32)
        self.pixel_std = float(sample.std(0).mean())

    @property
    def side(self) -> int:
        return self.frames.shape[1]

    @cached_property
    def distances(self) -> np.ndarray:
        """RMS distances between all pairs of training frames (16x16 features), computed once."""
        return frame_distances(self.feats)


# ---------------------------------------------------------------------------------------------- reference dreams


def reference_dreams(source_frames, n_frames: int, seed: int = 0, *, fps: float | None = None) -> dict[str, np.ndarray]:
    """Every reference dream (REFERENCE_DREAMS), each `n_frames` long (see `reference_dream`)."""
    return {name: reference_dream(name, source_frames, n_frames, seed, fps=fps) for name in REFERENCE_NAMES}


def reference_dream(name: str, source_frames, n_frames: int, seed: int = 0, *, fps: float | None = None,
                    start: int | None = None, dist: np.ndarray | None = None) -> np.ndarray:
    """The reference dream `name` (REFERENCE_DREAMS) built from the source (an array or a list of sequences).
    `start` fixes the first frame (index into the concatenated source), else it is drawn from `seed`; `dist`:
    optional precomputed `frame_distances`."""
    seqs = as_sequences(source_frames)
    frames = concat(seqs)
    m = len(frames)
    rng = np.random.default_rng(seed)
    first = int(start) if start is not None else int(rng.integers(m))
    if name in ("replay", "blurred"):
        idx = (first + np.arange(n_frames)) % m if start is not None else np.arange(n_frames) % m
    elif name == "shuffled":
        perms = [rng.permutation(m) for _ in range(n_frames // m + 1)]
        idx = np.concatenate(perms)[:n_frames]
        if start is not None:
            idx = np.concatenate([[first], idx[:n_frames - 1]])
    elif name == "frozen":
        idx = np.full(n_frames, first)
    elif name == "texture":
        idx = texture_indices(seqs, n_frames, rng, first, fps or 25.0, dist)
    else:
        raise ValueError(f"unknown reference dream {name!r}; choose from {', '.join(REFERENCE_NAMES)}")
    out = frames[idx]
    if name == "blurred":
        sigma = frames.shape[1] / 48
        out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    return out


def frame_distances(feats: torch.Tensor) -> np.ndarray:
    """RMS distances between all pairs of frame features."""
    sq = (feats * feats).sum(1)
    d2 = torch.addmm(sq[None] + sq[:, None], feats, feats.T, beta=1, alpha=-2).clamp_min(0)
    return (d2 / feats.shape[1]).sqrt().numpy()


def texture_indices(seqs: list[np.ndarray], n_frames: int, rng: np.random.Generator, first: int,
                    fps: float, dist: np.ndarray | None = None) -> np.ndarray:
    """Frame indices of a Schodl-style video texture over the concatenated sequences.

    Jump cost from frame i to frame j: D(i+1, j) + D(i, j-1) on 16x16 thumbnails (j's predecessor looks
    like i, and j looks like what would have come after i). Segments last a geometric number of frames with
    mean 2 seconds (and end at the end of a sequence); a jump picks uniformly among the 3 cheapest targets
    at least 8 frames away from the natural successor.
    """
    d = frame_distances(frame_features(concat(seqs))) if dist is None else dist
    nxt = next_index(seqs)
    prev = np.full(len(d), -1)
    prev[nxt[nxt >= 0]] = np.nonzero(nxt >= 0)[0]
    mean_len = max(4.0, 2 * fps)
    idx = np.empty(n_frames, np.int64)
    cur = first
    for t in range(n_frames):
        idx[t] = cur
        natural = nxt[cur]
        if natural >= 0 and rng.random() >= 1 / mean_len:
            cur = natural
        else:
            cur = _texture_jump(d, prev, cur, natural, rng)
    return idx


def _texture_jump(d: np.ndarray, prev: np.ndarray, cur: int, natural: int, rng: np.random.Generator) -> int:
    """Where a video texture jumps from frame `cur` (`natural`: its successor, or -1): one of the cheapest targets
    (see `texture_indices`); any other frame when no target is far enough away; `cur` when there is no other."""
    m = len(d)
    cost = np.full(m, np.inf)
    has_prev = prev >= 0
    cost[has_prev] = d[cur, prev[has_prev]]
    if natural >= 0:
        cost = cost + d[natural]
    near = natural if natural >= 0 else cur
    cost[max(0, near - TEXTURE_GAP):near + TEXTURE_GAP + 1] = np.inf
    finite = np.isfinite(cost)
    if not finite.any():
        cost = np.where(np.arange(m) != cur, 0.0, np.inf)
        finite = np.isfinite(cost)
        if not finite.any():
            return cur
    order = np.argsort(cost)[:min(TEXTURE_CHOICES, int(finite.sum()))]
    return int(rng.choice(order))
