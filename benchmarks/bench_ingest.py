"""Ingest speed: decode + resample + resize a long 1080p H.264 video into the frame cache.

    python benchmarks/bench_ingest.py                     # 10 minutes of 1080p30, made once in /tmp
    python benchmarks/bench_ingest.py --minutes 60 --sizes 64 256    # an hour, to the 64 and the 256 px cache

The video is generated with PyAV (moving gradients and shapes, libx264) and kept for later runs.
Peak RSS is measured in a child process that does nothing but ingest.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from common import machine, peak_rss_mb


def make_1080p(path: Path, seconds: float, fps: int = 30) -> Path:
    if path.exists():
        return path
    from tqdm import tqdm
    tmp = path.with_suffix(".part.mp4")
    width, height = 1920, 1080
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx[..., None] * np.array([1, 0, 2]) + yy[..., None] * np.array([0, 1, 1])) // 12).astype(np.uint8)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in tqdm(range(int(seconds * fps)), desc="making 1080p test video", unit="frame"):
            frame = np.roll(base, 7 * i, axis=1)
            x = (37 * i) % (width - 200)
            frame[400:600, x:x + 200] = (255, 220, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def ingest(path: str, out: str, size: int) -> None:
    from dreamvid.cache import build_cache
    cache = build_cache([path], Path(out), size=size, fps=None, crop="center", progress=False)
    print(f"frames {len(cache)} cache_bytes {cache.frames.nbytes} peak_rss_mb {peak_rss_mb():.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--video", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    args = parser.parse_args()
    video = args.video or make_1080p(Path(f"/tmp/dreamvid-bench-1080p-{args.minutes:g}min.mp4"), args.minutes * 60)
    duration = av.open(str(video)).duration / 1e6
    print(f"machine: {machine()}")
    for size in args.sizes:
        ingest_once(video, duration, size)


def ingest_once(video: Path, duration: float, size: int) -> None:
    """Ingest in a child process that does nothing else, so that its peak RSS is the ingest's own."""
    import tempfile
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        started = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, "--child", str(video), tmp, str(size)], capture_output=True,
                               text=True, check=True)
        seconds = time.perf_counter() - started
    facts = dict(zip(*[iter(child.stdout.split())] * 2))
    print(f"ingest {video.name} ({duration / 60:.1f} min of 1080p H.264) to {size} px: {seconds:.1f} s, "
          f"{duration / seconds:.1f}x real time, {int(facts['frames']) / seconds:.0f} frames/s, "
          f"peak RSS {facts['peak_rss_mb']} MB, cache {int(facts['cache_bytes']) / 2 ** 30:.2f} GiB "
          f"({facts['frames']} frames)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        ingest(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
