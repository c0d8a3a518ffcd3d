"""Where the networks run, and in which precision."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from .errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; an explicit choice that is unavailable is an error."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return prepare(torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"))
    if name not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unknown device {name!r}", "use auto, cpu, cuda or mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but this torch sees no CUDA GPU", "use --device cpu or auto")
    if name == "mps" and not mps:
        raise UsageError("--device mps asked for, but MPS is not available", "use --device cpu or auto")
    return prepare(torch.device(name))


def fast_bf16(device: torch.device) -> bool:
    """bf16 autocast pays on CPUs with native bf16 (AVX-512 BF16 / AMX). On an H100 these small models trained
    faster in fp32 (TF32) than under autocast (benchmarks/bench_train.py), and elsewhere it is slower."""
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def prepare(device: torch.device) -> torch.device:
    """Per-device speed settings that change no result a test could see at our tolerances."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return device


def place(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to `device`. On CPU, convolutional models run in channels_last: measured here, VAE decoding
    went from ~1900 to ~2500 frames/s and training ~8% faster (benchmarks/bench_*.py)."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if uses_channels_last(module, device) else module


def uses_channels_last(module: torch.nn.Module, device: torch.device) -> bool:
    """Whether `place` puts `module` in channels_last on `device` (its inputs are best given in it too)."""
    return device.type == "cpu" and convolutional(module)


def convolutional(module: torch.nn.Module) -> bool:
    """Whether `module` convolves. bf16 autocast pays for convolutions; the vector family's LSTMs train in fp32,
    as they always have."""
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in module.modules())


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def core_for_a_worker() -> Iterator[None]:
    """Torch's CPU threads one fewer for the duration, so that a worker thread (a video encoder) has a core of its
    own instead of contending with them; restored after. On 2 cores, a dream written to H.264 went from ~224 to
    ~264 frames/s (benchmarks/bench_dream.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)
