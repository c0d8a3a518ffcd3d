"""The VAE stage (frames -> a VAE that draws them) and the encode stage (every cached frame -> its latent)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..cache import FrameCache
from ..device import autocast
from ..models import VAE, SpatialVAE, StepBatch, encode_frames, frames_to_tensor
from ..models.patch_memory import PatchMemory, evenly_spaced_rows
from ..rundir import RunDir
from .control import step_generator
from .loop import descend, evaluating
from .parallel import World
from .previews import Previews

IN_MEMORY_LIMIT = 2 << 30  # frame caches smaller than this are read into RAM once
VALIDATION_FRAMES = 256
PREVIEW_FRAMES = 8


class FrameBatches:
    """A frame cache's training and held-out frames as float batches on the device. `sharing` processes on this
    machine each hold their own copy of a cache read into RAM, so a larger one stays memory-mapped."""

    def __init__(self, cache: FrameCache, device: torch.device, channels_last: bool, sharing: int = 1):
        self.device, self.channels_last = device, channels_last
        self.frames = cache.frames
        if cache.frames.nbytes * sharing < IN_MEMORY_LIMIT:
            self.frames = torch.from_numpy(np.array(cache.frames)).to(device)
        self.train_rows = _range_indices(cache.split_ranges("train"))
        self.held_out_rows = _range_indices(cache.split_ranges("val"))

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """The frames at `rows`, which are in order."""
        if torch.is_tensor(self.frames):
            picked = self.frames[torch.as_tensor(rows, device=self.frames.device)]
        else:
            picked = self.frames[rows]
        images = frames_to_tensor(picked, self.device)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def held_out(self, count: int) -> torch.Tensor:
        """Up to `count` held-out frames, spread evenly over them."""
        rows = self.held_out_rows
        return self.batch(rows[np.linspace(0, len(rows) - 1, min(count, len(rows))).astype(int)])


def vae_train_step(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, batch: StepBatch | None = None,
                   bf16: bool = False, loss_of: Callable | None = None, scale: float = 1.0) -> dict[str, float]:
    """One optimizer step on a batch of images; the loss per pixel and the VAE's reported parts (its KL).
    `loss_of` is the VAE's loss or its data-parallel wrapper, descended times `scale` (World.gradient_scale)."""
    with autocast(images.device, bf16):
        total, parts = (loss_of or vae.loss)(images, batch)
    clip = vae.config.grad_clip
    descend(optimizer, total * scale, clip=None if clip is None else clip * images[0].numel())
    return {"loss": total.item() / images[0].numel(), **{name: value.item() for name, value in parts.items()}}


class VAEStage:
    """Trains the VAE on shuffled batches of the training frames; scored on the held-out ones."""

    name = "vae"

    def __init__(self, vae: VAE, frames: FrameBatches, run: RunDir, previews: Previews, *, lr: float,
                 batch_size: int, epochs: int | None, seed: int, bf16: bool, world: World = World()):
        self.vae, self.frames, self.run, self.previews, self.world = vae, frames, run, previews, world
        self.loss = world.parallel(vae)
        self.optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
        self.batch_size = min(batch_size, len(frames.train_rows))
        self.steps_per_epoch = max(1, len(frames.train_rows) // self.batch_size)
        self.epochs, self.seed, self.bf16 = epochs, seed, bf16
        self.order = torch.arange(len(frames.train_rows))

    def restore(self) -> None:
        """Continue from the last checkpoint, if there is one."""
        if self.run.load_optimizer("vae", self.optimizer):
            self.run.load_weights("vae", self.vae)

    def begin_epoch(self, epoch: int) -> int:
        self.order = torch.randperm(len(self.frames.train_rows), generator=step_generator(self.seed, "vae", epoch))
        return self.steps_per_epoch

    def train_step(self, epoch: int, step: int) -> dict[str, float]:
        # In order (a memmap reads forward), before it is split: a frame's random numbers follow its place.
        picked = np.sort(self.order[step * self.batch_size:(step + 1) * self.batch_size].numpy())
        batch = self.world.step_batch(step_generator(self.seed, "vae", epoch, step, device=self.frames.device),
                                      len(picked))
        images = self.frames.batch(self.frames.train_rows[picked[batch.rows]])
        return vae_train_step(self.vae, self.optimizer, images, batch, self.bf16, self.loss, self.world.gradient_scale)

    def end_epoch(self) -> float:
        """The loss per pixel on held-out frames, with fixed noise so that epochs compare."""
        images = self.frames.held_out(VALIDATION_FRAMES)
        with evaluating(self.vae), autocast(self.frames.device, self.bf16):
            total, _ = self.vae.loss(images, StepBatch(step_generator(self.seed, "vae-val", device=self.frames.device)))
        return total.item() / images[0].numel()

    def save(self) -> None:
        self.run.save_weights("vae", self.vae)
        self.run.save_optimizer("vae", self.optimizer)

    def preview(self) -> None:
        self.previews.reconstruction(self.vae, self.frames.held_out(PREVIEW_FRAMES))

    def finish(self) -> None:
        """The weights to keep are the last ones."""


def encode_latents(vae: VAE, cache: FrameCache, run: RunDir, device: torch.device, bf16: bool,
                   show_progress: bool, world: World = World()) -> None:
    """Every cached frame's latent (mu, and logvar for a Gaussian VAE), each (N, *latent_shape), into
    latents.safetensors; each process encodes its part of the frames, process 0 writes them all."""
    mine = world.part(len(cache.frames))
    with evaluating(vae):
        mu, logvar = encode_frames(vae, cache.frames[mine], device, bf16, show_progress)
    mu = world.gather(mu, len(cache.frames))
    logvar = None if logvar is None else world.gather(logvar, len(cache.frames))
    if not world.main:
        return
    # Sequence and held-out bounds travel with the latents, so dreaming never needs the frame cache.
    bounds = {"sequences": [(s.start, s.stop) for s in cache.sequences], "train": cache.split_ranges("train"),
              "val": cache.split_ranges("val")}
    run.save_latents({"mu": mu, **({} if logvar is None else {"logvar": logvar}),
                      **{part: torch.tensor(ranges, dtype=torch.int64).view(-1, 2) for part, ranges in bounds.items()}})
    if isinstance(vae, SpatialVAE):
        run.save_memory(build_memory(vae, cache, mu).state_dict())


def build_memory(vae: SpatialVAE, cache: FrameCache, mu: torch.Tensor) -> PatchMemory:
    """The patch memory of the training frames (never the held-out ones) and their codes `mu[rows]`."""
    rows = evenly_spaced_rows(_range_indices(cache.split_ranges("train")), int(np.prod(mu.shape[-2:])))
    return PatchMemory.build(vae.quantise.code(mu[torch.from_numpy(rows)]).numpy(), cache.frames[rows],
                             vae.quantise.levels)


def _range_indices(ranges: list[tuple[int, int]]) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)
