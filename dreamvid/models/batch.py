"""StepBatch: one training step's batch as this process holds it, so that a loss is the whole batch's however many
processes share it.

Data-parallel training splits each batch over processes (training/parallel.py). Were every process to draw its
own random numbers and take its own means, N processes would train on other noise and other normalisers than one
does, and their losses could only agree on average. So a loss draws its numbers, and takes its sums and means,
through this: every draw is made as for the whole batch from the step's own generator and cut to this process's
rows (a row gets the numbers it gets in one process), and every sum is over the whole batch (its value summed over
the processes, its gradient reaching this process's rows). Alone, it is the whole batch and a plain sum.
"""
from __future__ import annotations

from typing import Callable

import torch


class StepBatch:
    """A step's draws from `generator` (None: torch's global one). With `rows`, this process holds those rows of a
    batch of `size`, and `total` sums a number over the processes; a process with no rows of its own holds row 0 at
    weight 0 (`empty`), since every process takes part in every step. Per-row tensors lead with the rows, or with
    the rows times a constant (windows x pairs)."""

    def __init__(self, generator: torch.Generator | None = None, rows: slice | None = None, size: int = 0,
                 total: Callable[[torch.Tensor], torch.Tensor] | None = None, empty: bool = False):
        self.generator, self.rows, self.size, self.total, self.empty = generator, rows, size, total, empty

    def rand(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        return self._cut(shape, lambda full: torch.rand(full, generator=self.generator, device=device))

    def randn(self, shape: tuple[int, ...], device: torch.device | str = "cpu",
              dtype: torch.dtype | None = None) -> torch.Tensor:
        return self._cut(shape, lambda full: torch.randn(full, generator=self.generator, device=device, dtype=dtype))

    def randint(self, high: int, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        return self._cut(shape, lambda full: torch.randint(high, full, generator=self.generator, device=device))

    def sum(self, per_row: torch.Tensor) -> torch.Tensor:
        """The sum over the whole batch of `per_row`."""
        mine = per_row.float().sum()
        if self.total is None:
            return mine
        if self.empty:
            mine = mine * 0
        return mine + (self.total(mine.detach()) - mine.detach())

    def mean(self, per_row: torch.Tensor) -> torch.Tensor:
        """The mean over the whole batch of `per_row`."""
        if self.total is None:
            return per_row.float().mean()
        return self.sum(per_row) / (self.size * self._per_row(per_row.shape))

    def _per_row(self, shape: tuple[int, ...]) -> int:
        mine = self.rows.stop - self.rows.start
        if shape[0] % mine:
            raise ValueError(f"a tensor of shape {tuple(shape)} does not lead with this process's {mine} rows")
        return shape[0] // mine

    def _cut(self, shape: tuple[int, ...], draw) -> torch.Tensor:
        shape = tuple(shape)
        if self.rows is None:
            return draw(shape)
        per_row = self._per_row(shape)
        full = draw((self.size * per_row, *shape[1:]))
        return full[self.rows.start * per_row:self.rows.stop * per_row]
