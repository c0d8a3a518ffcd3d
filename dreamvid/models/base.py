"""What every model family provides, and the frame <-> tensor conversions they share.

A `VAE` maps float frames in [0, 1], shape (B, 3, S, S), to latents (B, *latent_shape) and back, and owns its
training loss. A `DreamModel` maps a latent sequence to the parameters of the next latent's distribution and owns
its training loss, held-out NLL and sampling, so training, dreaming and evaluation never ask which kind it is.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..config import RNNConfig, VAEConfig
from .batch import StepBatch

SEQUENCE_CHUNK = 128   # steps of a held-out stretch scored at once: at 256 px, 900 maps at once took gigabytes
Params = Any   # whatever a dream model's `step` returns and its `nll`, `mean` and sampling understand
State = Any    # a dream model's recurrent state; None before the first step


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, S, S, 3) frames, as an array or a tensor -> float (N, 3, S, S) in [0, 1] on `device`."""
    if not torch.is_tensor(frames):
        frames = np.asarray(frames)
        if not frames.flags.writeable:  # a read-only memmap slice: torch wants memory it may write
            frames = frames.copy()
        frames = torch.from_numpy(frames)
    return frames.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, S, S) in [0, 1] -> uint8 (N, S, S, 3) frames."""
    return images.float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class VAE(nn.Module):
    """A frame auto-encoder. `encode` gives (mu, logvar): the latent means and, for a Gaussian posterior, their
    log-variances (None where the latents are deterministic, as quantised codes are)."""

    config: VAEConfig
    latent_shape: tuple[int, ...]            # one frame's latent: (z,) for a vector, (C, H, W) for a map

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, *latent_shape) -> float frames (B, 3, S, S) in [0, 1]."""
        raise NotImplementedError

    def loss(self, images: torch.Tensor, batch: StepBatch | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of a batch, and the parts worth reporting (e.g. {"kl": ...})."""
        raise NotImplementedError


@torch.no_grad()
def encode_frames(vae: VAE, frames: np.ndarray, device: torch.device, bf16: bool = False,
                  progress: bool = False, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mu, logvar or None) on the CPU for every frame of a uint8 (N, S, S, 3) array, encoded in batches."""
    from tqdm import tqdm
    from ..device import autocast
    mus, logvars = [], []
    for start in tqdm(range(0, len(frames), batch), desc="ENC", disable=not progress, leave=False):
        with autocast(device, bf16):
            mu, logvar = vae.encode(frames_to_tensor(frames[start:start + batch], device))
        mus.append(mu.float().cpu())
        if logvar is not None:
            logvars.append(logvar.float().cpu())
    return torch.cat(mus), torch.cat(logvars) if logvars else None


class DreamModel(nn.Module):
    """A next-latent model. Latents are (B, T, *latent_shape) sequences or (B, *latent_shape) steps."""

    config: RNNConfig

    def forward(self, z: torch.Tensor, state: State = None,
                batch: StepBatch | None = None) -> tuple[Params, State]:
        """Teacher-forced over a sequence: what predicts each next latent, and the final state."""
        raise NotImplementedError

    def step(self, z: torch.Tensor, state: State = None) -> tuple[Params, State]:
        """One time step from latents (B, *latent_shape)."""
        raise NotImplementedError

    def nll(self, params: Params, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of `target` under `params`, summed over the latent's dimensions."""
        raise NotImplementedError

    def mean(self, params: Params) -> torch.Tensor:
        """A point prediction of the next latent."""
        raise NotImplementedError

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor,
             batch: StepBatch | None = None) -> torch.Tensor:
        """The training loss of windows: `targets` (B, T, ...) each predicted from `inputs` up to it."""
        raise NotImplementedError

    @torch.no_grad()
    def sequence_nll(self, latents: torch.Tensor, first_scored: int, chunk: int = SEQUENCE_CHUNK) -> torch.Tensor:
        """Teacher-forced NLL of each of latents[first_scored:] (T, ...), predicted from every latent before it;
        `chunk` steps at a time, the state carried, so an hour's held-out tail takes a chunk's memory."""
        state, nlls = None, []
        for start in range(0, len(latents) - 1, chunk):
            stop = min(start + chunk, len(latents) - 1)
            params, state = self(latents[start:stop].unsqueeze(0), state)
            nlls.append(self.nll(params, latents[start + 1:stop + 1].unsqueeze(0))[0])
        return torch.cat(nlls)[first_scored - 1:]

    def draw_noise(self, steps: int, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """Every random number `steps` dream steps of `batch` dreams consume, each tensor led by the step: drawn
        at once, one generator call instead of a few per step. ONNX graphs take one step's share as inputs."""
        raise NotImplementedError

    def noise_kinds(self) -> tuple[str, ...]:
        """What each of draw_noise's tensors holds: "uniform" (in [0, 1)) or "normal" numbers."""
        raise NotImplementedError

    def dream_step(self, z: torch.Tensor, state: State, temperature: float | torch.Tensor,
                   noise: tuple[torch.Tensor, ...], decode_spread: float = 1.0,
                   feedback: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """One dreamed step after `z` (B, ...) from one step's share of draw_noise: (the latent to decode, the
        latent to feed back, the state). `feedback`, if given, maps each sample before it is fed back and shown."""
        raise NotImplementedError

    @torch.no_grad()
    def rollout(self, z: torch.Tensor, state: State, steps: int, temperature: float,
                generator: torch.Generator | None = None, decode_spread: float = 1.0,
                feedback: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Dream `steps` latents after `z` (B, ...): (latents to decode (B, steps, ...), the last latent to feed
        back, the state)."""
        noise = self.draw_noise(steps, len(z), generator, z.device)
        shown = []
        for index in range(steps):
            latent, z, state = self.dream_step(z, state, temperature, tuple(n[index] for n in noise), decode_spread,
                                               feedback)
            shown.append(latent)
        return torch.stack(shown, 1), z, state
