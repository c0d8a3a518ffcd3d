"""The loop every stage shares: epochs of steps from where the state says, until the stage's epochs are done, its
time is spent or a stop is asked for; it returns which (`Stop`) and leaves saving and raising to the job."""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterator, Protocol

import torch

from .control import Budget, Cadence, Stop, StopRequest
from .parallel import World
from .reporting import Meter, Reporter

STAGES = ("vae", "encode", "rnn", "done")


@dataclass
class TrainState:
    """Where the job is: what state/train_state.json commits and a resume starts from."""

    stage: str = "vae"
    epoch: int = 0
    step: int = 0                            # steps done in this epoch
    elapsed: float = 0.0                     # seconds of the budget spent, carried across resumes
    rnn_best_val: float | None = None        # keep_best: the lowest held-out NLL so far

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> TrainState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (raw or {}).items() if k in names})

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def advance(self, stage: str) -> None:
        self.stage, self.epoch, self.step = stage, 0, 0

    def next_epoch(self) -> None:
        self.epoch, self.step = self.epoch + 1, 0


class Stage(Protocol):
    """What the loop asks of a stage. Training losses, validation and what is saved are the stage's (and its
    models') own business."""

    name: str
    epochs: int | None                       # None: until the budget is spent
    steps_per_epoch: int                     # for the progress fraction

    def restore(self) -> None:
        """Continue from the last checkpoint, if there is one."""

    def begin_epoch(self, epoch: int) -> int:
        """Prepare epoch `epoch` (its shuffle, its learning rate) and return how many steps it has."""

    def train_step(self, epoch: int, step: int) -> dict[str, float]:
        """One optimizer step; the values to report, "loss" first."""

    def end_epoch(self) -> float:
        """The held-out loss after an epoch (or the part of one the budget allowed)."""

    def save(self) -> None:
        """Write the weights and optimizer state (the job commits the state after)."""

    def preview(self) -> None:
        """Write the stage's pictures into previews/."""

    def finish(self) -> None:
        """Settle on the weights to keep, once the loop is done."""


class StageLoop:
    """Runs stages with their collaborators: the state, the budget, stop requests, the reporter and the checkpoint
    cadence. `commit` writes the state, after whatever a checkpoint saved. Of several processes, all train and
    stop together; process 0 alone saves and previews."""

    def __init__(self, state: TrainState, budget: Budget, stop: StopRequest, reporter: Reporter, cadence: Cadence,
                 commit: Callable[[], None], world: World = World()):
        self.state, self.budget, self.stop = state, budget, stop
        self.reporter, self.cadence, self.commit, self.world = reporter, cadence, commit, world

    def run(self, stage: Stage) -> Stop:
        meter = self.reporter.meter(stage.name, stage.epochs, stage.steps_per_epoch)
        try:
            return self._epochs(stage, meter)
        finally:
            meter.close()

    def save(self, stage: Stage) -> None:
        if self.world.main:
            stage.save()
            self.commit()

    def checkpoint(self, stage: Stage) -> None:
        self.save(stage)
        if self.world.main:
            stage.preview()

    def _epochs(self, stage: Stage, meter: Meter) -> Stop:
        while stage.epochs is None or self.state.epoch < stage.epochs:
            if self.world.agree(self.budget.spent(stage.name))[0]:
                return Stop.BUDGET
            why = self._epoch(stage, meter)
            if why is Stop.INTERRUPTED:
                return why
            # An epoch the budget cut short is logged and scored too: it is the stage's last.
            self.reporter.log_epoch(stage.name, self.state.epoch, meter.take_losses(), stage.end_epoch(),
                                    partial=why is Stop.BUDGET)
            if why is Stop.BUDGET:
                return why
            self.state.next_epoch()
            if self.cadence.due():
                self.checkpoint(stage)
        return Stop.FINISHED

    def _epoch(self, stage: Stage, meter: Meter) -> Stop:
        epoch = self.state.epoch
        for step in range(self.state.step, stage.begin_epoch(epoch)):
            stop, spent = self.world.agree(bool(self.stop), self.budget.spent(stage.name))
            if stop:
                return Stop.INTERRUPTED
            if spent:
                return Stop.BUDGET
            values = stage.train_step(epoch, step)
            self.state.step = step + 1
            meter.update(values)
        return Stop.FINISHED


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> None:
    """One optimizer step down `loss`, its gradient norm clipped to `clip` if given."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    optimizer.step()


@contextlib.contextmanager
def evaluating(*modules: torch.nn.Module) -> Iterator[None]:
    """The modules in eval mode, without gradients, and back in training mode after."""
    for module in modules:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module in modules:
            module.train()
