"""What training tells: log.jsonl (one record per epoch), progress.json (the studio's live status), the progress
bars, the caller's on_event callback and warnings."""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from ..rundir import RunDir
from .control import Budget

if TYPE_CHECKING:
    from .loop import TrainState

PROGRESS_EVERY_S = 1.0


def warn(message: str) -> None:
    from tqdm import tqdm
    tqdm.write(f"dreamvid: warning: {message}", file=sys.stderr)  # stderr, as errors are


class Reporter:
    """Reports the job's state: `state` is read, never changed, here. One that does not `write` (the data-parallel
    processes other than process 0) tells nothing."""

    def __init__(self, run: RunDir, state: TrainState, budget: Budget, show_bars: bool,
                 on_event: Callable[[dict], None] | None, writes: bool = True):
        self.run, self.state, self.budget, self.writes = run, state, budget, writes
        self.show_bars, self.on_event = show_bars and writes, on_event if writes else None
        self._last_write = 0.0

    def meter(self, stage: str, epochs: int | None, steps_per_epoch: int) -> Meter:
        return Meter(self, stage, epochs, steps_per_epoch)

    def log_epoch(self, stage: str, epoch: int, step_losses: list[float], val_loss: float,
                  partial: bool = False) -> None:
        """One epoch's record: its last step's loss as train_loss, and every step's (since a resume)."""
        if not self.writes:
            return
        self.run.append_log({"stage": stage, "epoch": epoch, **({"partial": True} if partial else {}),
                             "train_loss": step_losses[-1] if step_losses else None, "val_loss": val_loss,
                             "step_losses": [float(f"{loss:.7g}") for loss in step_losses],
                             "elapsed_s": round(self.budget.elapsed(), 2)})

    def progress(self, force: bool = False, interrupted: bool = False, **extra: Any) -> None:
        """Rewrite progress.json, at most every PROGRESS_EVERY_S unless `force`."""
        now = time.monotonic()
        if not self.writes or not force and now - self._last_write < PROGRESS_EVERY_S:
            return
        self._last_write = now
        self.run.write_progress({"stage": self.state.stage, "epoch": self.state.epoch, "step": self.state.step,
                                 "elapsed_s": round(self.budget.elapsed(), 1), "finished": self.state.stage == "done",
                                 "interrupted": interrupted, "error": None, **extra})

    def event(self, event: dict[str, Any]) -> None:
        if self.on_event:
            self.on_event(event)


class Meter:
    """One stage's progress after every step: the fraction done (by steps or by the clock, whichever is further),
    its bar, progress.json and an event."""

    def __init__(self, reporter: Reporter, stage: str, epochs: int | None, steps_per_epoch: int):
        from tqdm import tqdm
        self.reporter, self.stage, self.epochs, self.steps_per_epoch = reporter, stage, epochs, steps_per_epoch
        self.started = reporter.budget.elapsed()
        self.losses: list[float] = []    # this epoch's, so far
        self.bar = tqdm(total=1000, desc=f"{stage.upper():>3}", disable=not reporter.show_bars, leave=True,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
        self.bar.update(round(1000 * self.fraction()))

    def fraction(self) -> float:
        state = self.reporter.state
        by_steps = 0.0
        if self.epochs:
            by_steps = (state.epoch * self.steps_per_epoch + state.step) / (self.epochs * self.steps_per_epoch)
        return min(1.0, max(by_steps, self.reporter.budget.fraction(self.stage)))

    def update(self, values: dict[str, float]) -> None:
        self.losses.append(values["loss"])
        state, fraction = self.reporter.state, self.fraction()
        self.bar.update(max(0, round(1000 * fraction) - self.bar.n))
        self.bar.set_postfix_str(f"epoch {state.epoch} " + " ".join(f"{k} {v:.4g}" for k, v in values.items()),
                                 refresh=False)
        spent = self.reporter.budget.elapsed() - self.started
        eta = None if fraction <= 0.01 else round(spent * (1 - fraction) / fraction, 1)
        self.reporter.progress(fraction=round(fraction, 4), eta_s=eta, loss=values.get("loss"))
        self.reporter.event({"stage": self.stage, "epoch": state.epoch, "step": state.step,
                             "fraction": round(fraction, 4), "eta_s": eta, **values})

    def take_losses(self) -> list[float]:
        """This epoch's step losses, and a fresh list for the next."""
        losses, self.losses = self.losses, []
        return losses

    def close(self) -> None:
        self.bar.close()
