"""Pictures a person would rather look at than read: frame grids and loss curves, written as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def frame_grid(rows: Sequence[np.ndarray], min_side: int = 96, gap: int = 2) -> np.ndarray:
    """Stack rows of uint8 (N, S, S, 3) frames into one image, upscaled (nearest) so small frames stay visible."""
    scale = max(1, -(-min_side // rows[0].shape[1]))
    width = max(len(r) for r in rows)
    side = rows[0].shape[1] * scale
    grid = np.full((len(rows) * (side + gap) - gap, width * (side + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            big = frame.repeat(scale, 0).repeat(scale, 1)
            grid[i * (side + gap):i * (side + gap) + side, j * (side + gap):j * (side + gap) + side] = big
    return grid


def save_png(path: Path, image: np.ndarray) -> None:
    import cv2
    from .files import atomic_replace
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if ok:
        atomic_replace(path, lambda tmp: Path(tmp).write_bytes(encoded.tobytes()))


def save_image_grid(path: Path, rows: Sequence[np.ndarray]) -> None:
    save_png(path, frame_grid(rows))


def plot_losses(records: Sequence[dict], out: Path) -> None:
    """Train and validation loss per epoch for each stage, side by side, from log.jsonl's records."""
    stages = [s for s in ("vae", "rnn") if any(r.get("stage") == s for r in records)]
    if not stages:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .files import atomic_replace
    figure, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.2), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        rows = [r for r in records if r.get("stage") == stage]
        for key, style in (("train_loss", "-o"), ("val_loss", "--s")):
            points = [(i, r[key]) for i, r in enumerate(rows) if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), style, ms=3, label=key.replace("_", " "))
        ax.set_title({"vae": "VAE loss per pixel", "rnn": "RNN NLL per step"}[stage])
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    figure.tight_layout()
    atomic_replace(out, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    plt.close(figure)
