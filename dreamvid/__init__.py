"""dreamvid: neural dream videos. A VAE learns a clip's look, an RNN its motion; together they dream.

    run = dreamvid.train("clip.mp4", out="runs/clip", minutes=5)
    dreamer = dreamvid.load("runs/clip")
    dreamer.dream(frames=600, temperature=1.0).save("dream.mp4")
"""
from __future__ import annotations

__version__ = "0.3.0"

# Imported on first use so that `import dreamvid` (and `dreamvid --help`) does not pay for torch.
# (The demo is `dreamvid.demo.demo`: re-exporting it here would clash with its own module's name.)
_API = {"train": "training", "Run": "training", "load": "dreaming", "Dreamer": "dreaming", "Dream": "dreaming",
        "evaluate": "evaluation", "compare": "evaluation", "make_config": "config",
        "PRESETS": "config", "DreamvidError": "errors", "UsageError": "errors"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'dreamvid' has no attribute {name!r}")
