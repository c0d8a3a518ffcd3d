"""Where a dream's blur lives: its sharpness inside each k-means cluster of the source, beside the source's own.

    python benchmarks/sharpness_by_cluster.py results/enduro--default --seed 0

A dream can miss the sharpness target because its frames are blurrier than the source's, or because it dwells
on the source's plainer scenes (a night road has fewer edges than a day one). Beside each cluster's dream
sharpness is that of the VAE's reconstructions (from the latent means) of the source's frames there: what the
decoder draws for those scenes given the best latents. The clusters are those of
`dreamvid eval` (its own source preparation: k-means on 16x16 thumbnails of the training frames); the dream
is the evaluation's too (10,000 frames, the run's temperature, `--seed`). Sharpness is the mean variance of
the Laplacian over the source's mean, as in the evaluation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamvid import dreaming, metrics  # noqa: E402
from dreamvid.evaluation import prepare_source  # noqa: E402


def cluster_sharpness(run: Path, seed: int, frames: int) -> list[str]:
    dreamer = dreaming.load(run, device="cpu")
    source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps, seed)
    centroids, source_cluster, source_sharpness = source.centroids, source.assign, source.lap
    scale = float(source_sharpness.mean())
    means = dreamer.encode(source.frames)[0]  # Dreamer.encode batches; its decode takes what it is given
    reconstructed = np.concatenate([dreamer.decode(means[i:i + 256]) for i in range(0, len(means), 256)])
    reconstruction_sharpness = metrics.laplacian_var(reconstructed)
    dream = np.concatenate(list(dreamer.dream(frames=frames, seed=seed).batches()))
    dream_cluster = metrics.nearest(metrics.frame_features(dream), centroids)[1].numpy()
    dream_sharpness = metrics.laplacian_var(dream)
    share = np.bincount(dream_cluster, minlength=len(centroids)) / len(dream)
    mix = sum(share[k] * source_sharpness[source_cluster == k].mean()
              for k in range(len(centroids)) if (source_cluster == k).any())
    lines = [f"{run}: dream sharpness {dream_sharpness.mean() / scale:.2f}; the source's own frames, in the "
             f"dream's mix of clusters, {mix / scale:.2f}",
             "cluster | dream share | source frames | source sharpness there | reconstructions there | "
             "dream sharpness there"]
    for k in np.argsort(-share):
        if share[k] < 0.01:
            break
        where = np.flatnonzero(source_cluster == k)
        in_source = source_sharpness[where].mean() / scale
        in_reconstructions = reconstruction_sharpness[where].mean() / scale
        in_dream = dream_sharpness[dream_cluster == k].mean() / scale
        lines.append(f"{k} | {share[k]:.2f} | {where.min()}-{where.max()} | {in_source:.2f} | "
                     f"{in_reconstructions:.2f} | {in_dream:.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells", type=Path, nargs="+", help="cells of presets.py (CELL/run) or run folders")
    parser.add_argument("--seed", type=int, default=0, help="the evaluation's seed (clusters and dream)")
    parser.add_argument("--frames", type=int, default=10000)
    args = parser.parse_args()
    for cell in args.cells:
        run = cell / "run" if (cell / "run").is_dir() else cell
        print("\n".join(cluster_sharpness(run, args.seed, args.frames)), flush=True)


if __name__ == "__main__":
    main()
