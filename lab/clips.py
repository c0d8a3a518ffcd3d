"""Lab helper: the four built-in screening clips as uint8 arrays (train part, held-out last 10%), cached in /tmp.

Not part of the package; lab scripts only. Usage: `from clips import load_clip` from a script in lab/.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLIPS = ("enduro", "riverraid", "bikes", "carphone")
ROOT = Path("/tmp/dreamvid-lab")


def load_clip(name: str, size: int = 64) -> tuple[np.ndarray, np.ndarray, float]:
    """(train frames, held-out frames, fps) of a built-in clip at `size` px, centre-cropped."""
    cached = ROOT / f"{name}-{size}.npz"
    if not cached.is_file():
        from dreamvid.footage import footage_path
        from dreamvid.video import probe, read_frames
        ROOT.mkdir(parents=True, exist_ok=True)
        source = footage_path(name, ROOT / "footage", n_frames=3000)
        fps = min(probe(source).fps, 30.0)
        frames = np.stack(list(read_frames(source, size=size, fps=fps, crop="center")))
        np.savez(cached, frames=frames, fps=fps)
    data = np.load(cached)
    frames, fps = data["frames"], float(data["fps"])
    held_out = max(1, -(-len(frames) // 10))
    return frames[:-held_out], frames[-held_out:], fps
