"""Shared by the benchmark scripts: what machine ran them, medians, peak memory."""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Callable


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
            f"{gpu}, Python {platform.python_version()}")


def median_rate(work: Callable[[], int], repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median items/s of `work` (which returns how many items it processed) over `repeats` timed calls."""
    for _ in range(warmup):
        work()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        items = work()
        rates.append(items / (time.perf_counter() - started))
    return statistics.median(rates), rates


def peak_rss_mb(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024
