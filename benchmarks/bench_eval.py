"""Benchmark `dreamvid eval`: a 10,000-frame 64 px dream against a 2,000-frame source.

    python benchmarks/bench_eval.py                    # scoring + calibration + report on a stand-in dream
    python benchmarks/bench_eval.py --run RUN_DIR      # the whole `evaluate` (dream generation included)

The source is Enduro played by ale-py (footage.atari_frames), resized to 64 px as video.read_frames does;
the stand-in dream is a video texture of the source with pixel noise, so nothing is copied exactly.
Prints seconds per stage, peak RSS and the machine. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dreamvid import evaluation as E
from dreamvid.evaluation import metrics as M
from dreamvid.footage import ATARI_FPS, atari_frames
from dreamvid.rundir import REPORT_HTML
from dreamvid.video import square_frame
from common import machine, peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10000, help="dream length")
    parser.add_argument("--source-frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--run", type=Path, help="benchmark evaluate() on this run instead (generates the dream)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is not None:
            t = time.perf_counter()
            report = E.evaluate(args.run, frames=args.frames, out=Path(tmp) / "eval", progress=False)
            total = time.perf_counter() - t
            print(f"evaluate({args.run}, frames={args.frames}): {total:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
            print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()))
            return
        t = time.perf_counter()
        source = np.stack([square_frame(f, args.size) for f in atari_frames("enduro", n_frames=args.source_frames, seed=0)])
        boundary = len(source) - max(1, int(np.ceil(0.1 * len(source))))
        train, held = source[:boundary], source[boundary:]
        rng = np.random.default_rng(1)
        dream = M.reference_dream("texture", train, args.frames, seed=1, fps=ATARI_FPS)
        for i in range(0, len(dream), 1000):
            chunk = dream[i:i + 1000].astype(np.int16) + rng.integers(-8, 9, dream[i:i + 1000].shape, dtype=np.int16)
            dream[i:i + 1000] = np.clip(chunk, 0, 255).astype(np.uint8)
        diversity = [M.reference_dream("texture", train, E.DIVERSITY_HORIZON, seed=10 + k, fps=ATARI_FPS, start=100)
                     for k in range(E.DIVERSITY_DREAMS)]
        setup = time.perf_counter() - t
        print(f"setup (footage + stand-in dream, not timed below): {setup:.1f} s; peak RSS so far {peak_rss_mb():.0f} MB")
        t = time.perf_counter()
        report = E.report_from_frames(dream, train, held, ATARI_FPS, out=Path(tmp) / "eval", seed=0,
                                      diversity_dreams=diversity, meta={"run_dir": "benchmark"})
        total = time.perf_counter() - t
        html_mb = (Path(tmp) / "eval" / REPORT_HTML).stat().st_size / 1e6
    print(f"eval of a {args.frames}-frame {args.size} px dream against a {len(source)}-frame source "
          f"(scoring, 5 reference dreams, report): {total:.1f} s")
    print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()))
    print(f"peak RSS {peak_rss_mb():.0f} MB, report.html {html_mb:.1f} MB")


if __name__ == "__main__":
    main()
