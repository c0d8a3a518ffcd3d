"""How much of its own clusters does a stretch of the source cover? (issue 19, coverage >= 0.9)

Coverage is the share of the k-means clusters of the source's training frames that a dream visits. Here the
source itself is scored the same way: the coverage of L consecutive training frames (20 stretches, evenly
spaced) and how many frames from the start pass before 90% of the clusters are seen.

    python lab/coverage_story.py /tmp/res10-own/{enduro,riverraid,bikes,carphone}--default--seed0/run

2026-12-07: Enduro 2,700 frames, 1,000-frame stretches median 0.56 (0.31-0.69), 90% seen after 2,298 frames;
River Raid 0.94 (0.88-1.00), after 583; `bikes` (225 frames) 100-frame stretches 0.47, after 188; carphone
(108 frames) 1.00, after 82.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source


def main() -> None:
    torch.set_grad_enabled(False)
    for run in sys.argv[1:]:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        clusters, k = source.assign, len(source.centroids)
        line = [f"{run}: {len(clusters)} frames, {k} clusters"]
        for length in (100, 300, 1000):
            if length < len(clusters):
                starts = np.linspace(0, len(clusters) - length, 20).astype(int)
                shares = [len(np.unique(clusters[s:s + length])) / k for s in starts]
                line.append(f"{length} frames: median {np.median(shares):.2f} ({min(shares):.2f}-{max(shares):.2f})")
        first_seen = sorted(int(np.argmax(clusters == c)) for c in range(k))
        line.append(f"90% seen after {first_seen[int(np.ceil(0.9 * k)) - 1]} frames")
        print("; ".join(line), flush=True)


if __name__ == "__main__":
    main()
