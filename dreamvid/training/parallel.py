"""Data-parallel training: the processes of one job (torchrun's "world") and what they must agree on.

One process is a world of one, where every method here is the identity or does nothing, so the stages have one
code path. With N processes (`dreamvid train --nproc N`, or torchrun across machines):

- each step's batch, the one the preset names, is split over the processes (`step_batch`), and PyTorch's
  DistributedDataParallel exchanges their gradients;
- every process draws a sample's random numbers as one process would, and a loss's sums and means are the whole
  batch's (models/batch.py), so each step's loss and gradient are one process's, up to the order of float sums;
- the loop asks `agree` before each step, so all stop at the same step when the budget is spent or any of them
  is interrupted;
- process 0 alone builds the frame cache and writes the run folder; the others read what it wrote.

Why not torch's DistributedSampler: it deals each process its own part of an epoch, so a step of two processes
trains on other frames than the same step of one. Splitting every batch keeps a step the same step, which is
what lets a run resume with another number of processes and the losses of 1 and N processes be compared.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import DreamvidError, UsageError
from ..models import StepBatch

# Process 0 may decode a long source into the frame cache while the others wait for it.
WAIT = timedelta(minutes=60)
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job: its rank of `size`, and of `local_size` on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_env(cls) -> World:
        """The world torchrun describes in this process's environment; a world of one without it."""
        try:
            return cls(*(int(os.environ.get(name, default)) for name, default in
                         (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0), ("LOCAL_WORLD_SIZE", 1))))
        except ValueError:
            raise UsageError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be whole numbers",
                             "launch with dreamvid train --nproc N or torchrun") from None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's device: on CUDA, its own GPU on this machine; on CPUs, its share of the cores (the
        threads torch uses)."""
        if self.size == 1:
            return device
        if device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        if device.type != "cpu":
            raise UsageError(f"data-parallel training runs on CPUs or CUDA GPUs, not {device.type}",
                             "pass --device cpu, or train in one process")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.local_size))
        return device

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator[None]:
        """The process group for the job's lifetime (gloo on CPUs, NCCL on GPUs)."""
        if self.size == 1:
            yield
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=WAIT, device_id=device if device.type == "cuda" else None)
        except (dist.DistError, RuntimeError, ValueError) as exc:
            raise DreamvidError(f"cannot join the other training processes ({_first_line(exc)})",
                                "check torchrun's --master-addr and --master-port") from None
        try:
            yield
        except PeerLost:
            raise   # tearing down a group whose peer died can abort in C++; the process is about to exit anyway
        except BaseException:
            dist.destroy_process_group()
            raise
        dist.destroy_process_group()

    def part(self, count: int) -> slice:
        """This process's rows of `count` (none where count < size)."""
        return slice(count * self.rank // self.size, count * (self.rank + 1) // self.size)

    def step_batch(self, generator: torch.Generator, count: int) -> StepBatch:
        """A step's batch of `count` rows as this process holds it, its random numbers from `generator`."""
        rows = self.part(count)
        if self.size == 1:
            return StepBatch(generator, rows, count)
        if rows.start == rows.stop:   # every process takes part in each step's gradient exchange
            return StepBatch(generator, slice(0, 1), count, _sum_over_processes, empty=True)
        return StepBatch(generator, rows, count, _sum_over_processes)

    @property
    def gradient_scale(self) -> float:
        """What a loss is multiplied by before its backward pass: DistributedDataParallel averages the processes'
        gradients, where each already holds its share of the whole batch's."""
        return float(self.size)

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true where any process raised it."""
        if self.size == 1:
            return flags
        raised = torch.tensor([float(flag) for flag in flags], device=_exchange_device())
        dist.all_reduce(raised, dist.ReduceOp.MAX)
        return tuple(bool(value) for value in raised.tolist())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def from_main(self, work: Callable[[], T]) -> T | None:
        """`work` done by process 0 alone; the others wait for it, and raise its error if it raised one."""
        failure: tuple[str, str, str | None] | None = None
        result = None
        if self.main:
            try:
                result = work()
            except DreamvidError as exc:
                failure = (type(exc).__name__, exc.problem, exc.fix)
                if self.size == 1:
                    raise
        if self.size > 1:
            shared = [failure]
            dist.broadcast_object_list(shared, src=0)   # our own process's strings, not a user's file
            failure = shared[0]
        if failure is not None:
            kind, problem, fix = failure
            error = (UsageError if kind == "UsageError" else DreamvidError)(problem, fix)
            error.quiet = not self.main
            raise error
        return result

    def parallel(self, model: nn.Module) -> Callable:
        """`model.loss`, its gradients averaged over the processes by DistributedDataParallel."""
        if self.size == 1:
            return model.loss
        device = next(model.parameters()).device
        loss = _Loss(model)
        # Buffers are constants every process builds alike (FSQ's levels); DDP's broadcast of them fails on
        # channels_last models, and they never change, so it is skipped.
        DDP._set_params_and_buffers_to_ignore_for_model(loss, [name for name, _ in
                                                               loss.named_buffers(remove_duplicate=False)])
        return DDP(loss, device_ids=[device] if device.type == "cuda" else None)

    def gather(self, tensor: torch.Tensor, count: int) -> torch.Tensor | None:
        """On process 0, every process's `part` of `count` rows concatenated in order; None on the others."""
        if self.size == 1:
            return tensor
        longest = -(-count // self.size)
        padded = tensor.new_zeros(longest, *tensor.shape[1:], device=_exchange_device())
        padded[:len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.size)] if self.main else None
        dist.gather(padded, parts, dst=0)
        if not self.main:
            return None
        rows = [World(rank, self.size).part(count) for rank in range(self.size)]
        return torch.cat([part[:mine.stop - mine.start] for part, mine in zip(parts, rows)]).to(tensor.device)


class PeerLost(DreamvidError):
    """Another process of the job is gone: this one stops too, the run keeping its last checkpoint."""


@contextlib.contextmanager
def peers_watched(world: World, run_path) -> Iterator[None]:
    """Turns the error a collective raises when another process died into one line that says so."""
    try:
        yield
    except (dist.DistError, RuntimeError) as exc:
        if world.size == 1 or isinstance(exc, DreamvidError) or not _lost_peer(exc):
            raise
        raise PeerLost(f"another training process of this job stopped ({_first_line(exc)[:120]}); the run keeps "
                       "its last checkpoint", f"resume with: dreamvid train -o {run_path} --resume") from None


def _lost_peer(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(sign in text for sign in ("gloo", "NCCL", "Connection reset",
                                                                            "Connection closed", "Broken pipe"))


class _Loss(nn.Module):
    """A model whose forward is its training loss: what DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.loss(*args)


def _sum_over_processes(value: torch.Tensor) -> torch.Tensor:
    summed = value.to(_exchange_device(), copy=True)
    dist.all_reduce(summed)
    return summed.to(value.device)


def _exchange_device() -> torch.device:
    """Where tensors must be to be exchanged: NCCL moves GPU memory only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
