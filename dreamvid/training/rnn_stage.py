"""The RNN stage: the dream model learns from windows of latents, scored on each source's held-out tail."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..device import autocast
from ..models import DreamModel, StepBatch, VAE, reparameterise
from ..rundir import RunDir
from .control import step_generator
from .loop import TrainState, descend, evaluating
from .parallel import World
from .previews import Previews


class LatentWindows:
    """A run's latents, (N, *latent_shape), cut along the first axis into windows of `seq_len` + 1 that never
    cross from one source into the next."""

    def __init__(self, latents: dict[str, torch.Tensor], seq_len: int, device: torch.device):
        self.mu = latents["mu"].to(device)
        self.logvar = latents["logvar"].to(device) if "logvar" in latents else None  # None: deterministic codes
        self.seq_len = seq_len
        self.train_ranges = [tuple(r) for r in latents["train"].tolist()]
        self.held_out_ranges = [tuple(r) for r in latents["val"].tolist()]
        self.sequence_starts = {stop: start for start, stop in latents["sequences"].tolist()}

    def shuffled_starts(self, generator: torch.Generator) -> np.ndarray:
        """An epoch's window starts: the tiling shifted by a random offset, in random order."""
        offset = int(torch.randint(self.seq_len, (1,), generator=generator))
        starts = window_starts(self.train_ranges, self.seq_len, offset)
        return starts[torch.randperm(len(starts), generator=generator).numpy()]

    def windows_per_epoch(self) -> int:
        return len(window_starts(self.train_ranges, self.seq_len, 0))

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """One draw of every frame's latent from its posterior (the latents themselves where they are codes)."""
        return self.mu if self.logvar is None else reparameterise(self.mu, self.logvar, StepBatch(generator))

    def cut(self, z: torch.Tensor, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the windows at `starts`, each (B, seq_len, *latent_shape), targets one step on."""
        rows = torch.as_tensor(starts, device=z.device)
        window = z[rows[:, None] + torch.arange(self.seq_len + 1, device=z.device)]
        return window[:, :-1], window[:, 1:]

    def held_out(self) -> list[tuple[torch.Tensor, int]]:
        """Each held-out tail with the frames before it in its source (at most one window), and where it starts."""
        tails = []
        for start, stop in self.held_out_ranges:
            first = max(self.sequence_starts.get(stop, start), start - self.seq_len)
            tails.append((self.mu[first:stop], start - first))
        return tails


def window_starts(ranges: list[tuple[int, int]], seq_len: int, offset: int) -> np.ndarray:
    """Starts of (seq_len + 1)-frame windows inside each range, so no window crosses a source boundary;
    `offset` shifts the tiling each epoch so every transition is trained on."""
    starts: list[int] = []
    for a, b in ranges:
        last = b - seq_len - 1
        if last >= a:
            starts.extend(range(a + min(offset % seq_len, last - a), last + 1, seq_len))
    return np.asarray(starts, dtype=np.int64)


def rnn_train_step(rnn: DreamModel, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                   targets: torch.Tensor, batch: StepBatch | None = None, bf16: bool = False,
                   loss_of: Callable | None = None, scale: float = 1.0) -> float:
    """One optimizer step on windows of latents; the model's loss (mean NLL per step). `batch` draws the dropout
    masks and whatever else the model draws; `loss_of` is the model's loss or its data-parallel wrapper, descended
    times `scale` (World.gradient_scale)."""
    with autocast(inputs.device, bf16):
        loss = (loss_of or rnn.loss)(inputs, targets, batch)
    descend(optimizer, loss * scale, clip=rnn.config.grad_clip)
    return loss.item()


class RNNStage:
    """Trains the dream model on one posterior sample of every latent per epoch; with `keep_best`, ends with the
    weights of its best held-out epoch. On short clips the held-out NLL bottoms out within seconds and the RNN then
    memorises the clip."""

    name = "rnn"

    def __init__(self, rnn: DreamModel, vae: VAE, windows: LatentWindows, run: RunDir, previews: Previews,
                 state: TrainState, *, batch_size: int, epochs: int | None, seed: int, bf16: bool,
                 world: World = World()):
        self.rnn, self.vae, self.windows, self.run, self.previews, self.state = rnn, vae, windows, run, previews, state
        self.world, self.loss = world, world.parallel(rnn)
        self.optimizer = torch.optim.Adam(rnn.parameters(), lr=rnn.config.lr)
        self.batch_size, self.epochs, self.seed, self.bf16 = batch_size, epochs, seed, bf16
        self.steps_per_epoch = max(1, math.ceil(windows.windows_per_epoch() / batch_size))
        self.best: dict[str, torch.Tensor] | None = None
        self.starts = np.zeros(0, np.int64)
        self.z = windows.mu

    def restore(self) -> None:
        """Continue from the last checkpoint, if there is one."""
        if self.run.load_optimizer("rnn", self.optimizer):
            self.run.load_weights("rnn", self.rnn)
        self.best = self.run.load_best_rnn()

    def begin_epoch(self, epoch: int) -> int:
        self.starts = self.windows.shuffled_starts(step_generator(self.seed, "rnn", epoch))
        self.z = self.windows.sample(step_generator(self.seed, "rnn-z", epoch, device=self.windows.mu.device))
        config = self.rnn.config
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * config.lr_decay ** epoch
        return math.ceil(len(self.starts) / self.batch_size)

    def train_step(self, epoch: int, step: int) -> dict[str, float]:
        starts = self.starts[step * self.batch_size:(step + 1) * self.batch_size]
        batch = self.world.step_batch(step_generator(self.seed, "rnn", epoch, step, device=self.windows.mu.device),
                                      len(starts))
        inputs, targets = self.windows.cut(self.z, starts[batch.rows])
        return {"loss": rnn_train_step(self.rnn, self.optimizer, inputs, targets, batch, self.bf16, self.loss,
                                       self.world.gradient_scale)}

    def end_epoch(self) -> float:
        """The held-out NLL per step; the weights are kept if it is the best so far."""
        loss = self.validate()
        best = self.state.rnn_best_val
        if self.rnn.config.keep_best and (best is None or loss < best):
            self.state.rnn_best_val = loss
            self.best = {k: v.detach().clone() for k, v in self.rnn.state_dict().items()}
        return loss

    def validate(self) -> float:
        """Teacher-forced NLL per step on every held-out tail, the RNN warmed up on the frames before it."""
        total, count = 0.0, 0
        with evaluating(self.rnn):
            for latents, first_scored in self.windows.held_out():
                nll = self.rnn.sequence_nll(latents, first_scored)
                total, count = total + nll.sum().item(), count + nll.numel()
        return total / max(count, 1)

    def save(self) -> None:
        self.run.save_weights("rnn", self.rnn)
        self.run.save_optimizer("rnn", self.optimizer)
        if self.best is not None:
            self.run.save_best_rnn(self.best)

    def preview(self) -> None:
        start = self.windows.held_out_ranges[0][0]
        self.previews.dream(self.vae, self.rnn, self.windows.mu[start:start + 1])

    def finish(self) -> None:
        """The weights to keep: the best held-out epoch's, if the stage keeps the best."""
        if self.best is not None:
            self.rnn.load_state_dict(self.best)
