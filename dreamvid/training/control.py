"""What a stage's loop consults between steps: the clock, stop requests, the checkpoint cadence, the randomness."""
from __future__ import annotations

import contextlib
import enum
import hashlib
import signal
import threading
import time
from typing import Any, Iterator

import torch

CHECKPOINT_EVERY_S = 20.0


class Stop(enum.Enum):
    """Why a stage's loop returned."""

    FINISHED = "finished"        # its epochs are done
    BUDGET = "budget"            # its share of the wall-clock budget is spent
    INTERRUPTED = "interrupted"  # Ctrl-C or a stop request: save, and leave the rest to --resume


def step_generator(seed: int, *keys: Any, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by (seed, *keys), e.g. (seed, "vae", epoch, step): every step's randomness is its own,
    so a run is deterministic on CPU and a resumed run repeats exactly what an uninterrupted one would draw."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class Budget:
    """The job's wall clock, with the time already spent before a resume, and each stage's window of it: the
    VAE trains for the first `vae_share` of the budget, the RNN until its end."""

    def __init__(self, seconds: float | None, vae_share: float, elapsed: float = 0.0):
        self.seconds = seconds
        self.vae_share = vae_share
        self._started = time.monotonic() - elapsed

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def window(self, stage: str) -> tuple[float, float] | None:
        """(start, deadline) of `stage` in elapsed seconds; None without a time budget."""
        if self.seconds is None:
            return None
        split = self.seconds * self.vae_share
        return (0.0, split) if stage == "vae" else (split, self.seconds)

    def spent(self, stage: str) -> bool:
        window = self.window(stage)
        return window is not None and self.elapsed() >= window[1]

    def fraction(self, stage: str) -> float:
        """How much of `stage`'s window has passed (0 without a time budget)."""
        window = self.window(stage)
        if window is None:
            return 0.0
        start, deadline = window
        return (self.elapsed() - start) / max(deadline - start, 1e-9)


class StopRequest:
    """Turns Ctrl-C (and an optional Event) into a flag checked between steps, so a save is never torn."""

    def __init__(self, event: threading.Event | None = None):
        self.event = event or threading.Event()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda *_: self.event.set())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def __bool__(self) -> bool:
        return self.event.is_set()


class Cadence:
    """Checkpoints and previews between epochs at most every `seconds`: an RNN epoch can be a few steps, and saving
    after each would cost more than training. Stage ends and Ctrl-C always save."""

    def __init__(self, seconds: float = CHECKPOINT_EVERY_S):
        self.seconds = seconds
        self._last = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True
