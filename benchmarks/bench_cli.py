"""How fast `dreamvid --help` answers (torch must not be imported for it).

    python benchmarks/bench_cli.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import machine


def main(repeats: int = 7) -> None:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dreamvid", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    print(f"machine: {machine()}")
    print(f"dreamvid --help: median {statistics.median(times) * 1000:.0f} ms over {repeats} runs "
          f"(min {min(times) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
