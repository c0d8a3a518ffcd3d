"""Diagnostic (issue 19, dream sharpness): is a dream's low sharpness where it stays or how it draws? Each dreamed
frame's Laplacian variance against its nearest source frame's (and that frame's reconstruction), 2,000 frames.

    python lab/sharpness_nearest.py /tmp/res10-own/*/run

2026-12-07, the own-maps runs: dream / nearest source frame 0.68 / 0.78 (Enduro), 0.84 / 0.82 (River Raid),
0.95 / 0.89 (carphone), 0.51 / 0.76 (`bikes`); nearest / source mean 0.86 / 0.85, 0.96 / 0.91, 0.93 / 0.91,
2.25 / 0.59; reconstructions of the nearest frames keep their sharpness (the patch memory).
"""
import sys
import numpy as np, torch
import dreamvid
from dreamvid.evaluation import metrics as M
from dreamvid.evaluation.scoring import prepare_source, per_frame
torch.set_grad_enabled(False)
for run in sys.argv[1:]:
    d = dreamvid.load(run, device="cpu")
    src = prepare_source(d.cache.split("train"), d.cache.split("val"), d.fps)
    frames = np.stack(list(d.dream(frames=2000, seed=0)))
    pf = per_frame(frames, src)
    nn_lap = src.lap[pf.nn_idx]
    # reconstructions of those nearest source frames
    mu, _ = d.encode(src.frames[pf.nn_idx[::10]])
    codes = d.vae.quantise.code_values(d.vae.quantise.code(mu))
    recon = d.decode(codes)
    print(run.split("/")[3], f"dream {pf.lap.mean():.1f} nearest-source {nn_lap.mean():.1f} source {src.lap.mean():.1f} "
          f"recon-of-nearest {M.laplacian_var(recon).mean():.1f} nearest(sub) {nn_lap[::10].mean():.1f} "
          f"| dream/nearest {pf.lap.mean()/nn_lap.mean():.2f} nearest/source {nn_lap.mean()/src.lap.mean():.2f}", flush=True)
