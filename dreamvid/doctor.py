"""`dreamvid doctor`: what a bug report needs to know about this installation, one fact per line."""
from __future__ import annotations

import os
import platform
from importlib import metadata

from . import __version__

# The packages whose versions explain most reports: video I/O, weights, and the studio's server stack.
PACKAGES = ("numpy", "av", "safetensors", "opencv-python-headless", "starlette", "uvicorn", "websockets")


def report() -> dict[str, str]:
    """{what: version or state} for dreamvid, Python, torch, the device, PyAV/FFmpeg and the studio's stack."""
    import av
    import torch

    from .device import fast_bf16, resolve_device
    device = resolve_device("auto")
    facts = {"dreamvid": __version__,
             "python": f"{platform.python_version()} on {platform.platform()}",
             "cpu cores": str(os.cpu_count()),
             "torch": f"{torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()})",
             "device": _device_line(device, torch),
             "bf16 autocast": "yes" if fast_bf16(device) else "no (fp32)",
             "data-parallel": _parallel_line(),
             "ffmpeg": ", ".join(f"{name} {'.'.join(map(str, version))}"
                                 for name, version in sorted(av.library_versions.items()))}
    facts.update({name: _version(name) for name in PACKAGES})
    return facts


def _device_line(device, torch) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return device.type


def _parallel_line() -> str:
    """What `train --nproc` can use: torch.distributed's backends here."""
    import torch.distributed as dist
    if not dist.is_available():
        return "no (torch built without torch.distributed)"
    backends = [name for name, ok in (("gloo", dist.is_gloo_available()), ("nccl", dist.is_nccl_available())) if ok]
    return ", ".join(backends) or "no backend"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def format_report(facts: dict[str, str]) -> str:
    width = max(map(len, facts))
    return "\n".join(f"{name:<{width}}  {value}" for name, value in facts.items())
