"""Nearest rows and k-means on torch tensors: what the evaluation's metrics and the patch memory both search with."""
from __future__ import annotations

import torch


def nearest(query: torch.Tensor, bank: torch.Tensor, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RMS distance (per element) from each query row to its nearest bank row, and that row's index.
    Queries go in chunks so that one chunk's distance matrix stays near 16 MB."""
    chunk = chunk or max(16, (4 << 20) // max(1, len(bank)))
    dists, idxs = [], []
    bank_sq = (bank * bank).sum(1)
    for i in range(0, len(query), chunk):
        q = query[i:i + chunk]
        d2 = torch.addmm(bank_sq[None], q, bank.T, beta=1, alpha=-2)
        d, j = d2.min(1)
        dists.append((d + (q * q).sum(1)).clamp_min(0))
        idxs.append(j)
    d2 = torch.cat(dists)
    return (d2 / query.shape[1]).sqrt(), torch.cat(idxs)


def kmeans(x: torch.Tensor, k: int, iters: int, seed: int = 0) -> torch.Tensor:
    """k-means++ seeding and `iters` Lloyd steps; returns the centroids (k, D)."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, min(k, len(x)))
    centroids = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    d2 = ((x - centroids[0]) ** 2).sum(1)
    for _ in range(1, k):
        spread = float(d2.sum()) > 0  # else every point is a centroid already: any one will do
        pick = torch.multinomial(d2, 1, generator=g) if spread else torch.randint(len(x), (1,), generator=g)
        centroids.append(x[pick].squeeze(0))
        d2 = torch.minimum(d2, ((x - centroids[-1]) ** 2).sum(1))
    return lloyd(x, torch.stack(centroids), iters)


def lloyd(x: torch.Tensor, centroids: torch.Tensor, iters: int) -> torch.Tensor:
    """`iters` Lloyd steps from `centroids` (k, D), updated in place and returned; a centroid no row is nearest to
    stays where it is."""
    for _ in range(iters):
        assign = nearest(x, centroids)[1]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=len(centroids))
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(x.dtype)
    return centroids
