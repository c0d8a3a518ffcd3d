"""`dreamvid demo`: the whole product on built-in footage, with no arguments and no download.

Plays Enduro (Atari, through ale-py) with a scripted driver, trains on it, dreams a minute of new driving,
and writes a side-by-side preview (source | reconstruction | dream).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError
from .rundir import RunDir

PREVIEW_FRAMES = 300
OUTPUTS = ("footage.mp4", "run", "dream.mp4", "preview.mp4")
MARKER = ".dreamvid-demo"  # a folder with it holds what an earlier demo wrote, which a new one may replace


@dataclass
class DemoResult:
    footage: Path
    run: Path
    dream: Path
    preview: Path

    def summary(self) -> str:
        return "\n".join([
            "dreamvid demo finished:",
            f"  dream    {self.dream}    a new minute of Enduro, from the models alone",
            f"  preview  {self.preview}    source | reconstruction | dream, side by side",
            f"  run      {self.run}    (more: dreamvid dream {self.run} --seconds 120 -o longer.mp4)",
            f"  footage  {self.footage}",
        ])


def demo(out: str | Path = "demo", *, minutes: float = 4.5, preset: str = "default", footage_frames: int = 3000,
         dream_seconds: float = 60, force: bool = False, progress: bool = True) -> DemoResult:
    """Footage -> training -> dream -> preview, all under `out`. A finished run is reused unless `force`."""
    from .dreaming import load
    from .footage import write_demo_footage
    from .training import train

    out = Path(out)
    if footage_frames < 1:
        raise UsageError(f"--frames must be at least 1, got {footage_frames}")
    _claim(out, force)
    footage = out / "footage.mp4"
    if force or not footage.is_file():
        footage.unlink(missing_ok=True)
        write_demo_footage(footage, n_frames=footage_frames, progress=progress)
    run = RunDir(out / "run")
    if force or not run.is_finished():
        resume = not force and run.state_path.is_file()  # a demo stopped midway continues
        train([footage], run.path, preset=preset, minutes=minutes, resume=resume, force=force, progress=progress)
    dreamer = load(run.path)
    dream = dreamer.dream(seconds=dream_seconds, seed=0).save(out / "dream.mp4", force=True, progress=progress)
    preview = write_preview(dreamer, out / "preview.mp4", progress=progress)
    return DemoResult(footage, run.path, dream, preview)


def _claim(out: Path, force: bool) -> None:
    """Make `out` the demo's folder; a UsageError if it holds one of the demo's file names that an earlier demo
    did not write (the user's own), unless `force`."""
    if not force and not (out / MARKER).exists():
        taken = [out / name for name in OUTPUTS if (out / name).exists()]
        if taken:
            raise UsageError(f"{taken[0]} exists and was not made by dreamvid demo",
                             "pass --force to replace it, or choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()


def write_preview(dreamer, path: Path, frames: int = PREVIEW_FRAMES, progress: bool = True) -> Path:
    """Source (ending in its held-out tail) | its VAE reconstruction | a dream primed on the same first frame."""
    from tqdm import tqdm
    from .video import VideoWriter, default_upscale
    cache = dreamer.cache
    sequence = max(cache.sequences, key=lambda s: s.stop - s.start)
    start = max(sequence.start, sequence.stop - frames)  # the source's end, held-out tail included
    source = cache.frames[start:sequence.stop]
    dream = dreamer.session(seed=0, frame_index=start)
    with VideoWriter(path, dreamer.fps, upscale=default_upscale(dreamer.size), force=True) as writer:
        for first in tqdm(range(0, len(source), 64), desc="PREVIEW", disable=not progress, leave=False):
            chunk = np.asarray(source[first:first + 64])
            reconstruction = dreamer.decode(dreamer.encode(chunk)[0])
            dreamed = dream.next_frames(len(chunk))
            writer.write_batch(np.concatenate([chunk, reconstruction, dreamed], axis=2))
    return path
