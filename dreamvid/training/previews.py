"""The pictures a run folder gets while it trains, in previews/: reconstructions, a dream strip, the loss curves."""
from __future__ import annotations

import torch

from ..models import DreamModel, VAE, tensor_to_frames
from ..plots import plot_losses, save_image_grid
from ..rundir import RunDir
from .control import step_generator
from .loop import evaluating

DREAM_FRAMES = 16


class Previews:
    def __init__(self, run: RunDir, seed: int, device: torch.device):
        self.run, self.seed, self.device = run, seed, device

    def reconstruction(self, vae: VAE, images: torch.Tensor) -> None:
        """Held-out frames above their reconstructions from the latent means."""
        with evaluating(vae):
            reconstruction = vae.decode(vae.encode(images)[0])
        save_image_grid(self.run.preview_path("reconstruction.png"),
                        [tensor_to_frames(images), tensor_to_frames(reconstruction)])

    def dream(self, vae: VAE, rnn: DreamModel, first: torch.Tensor) -> None:
        """Two rows of a dream that starts from the latent `first` (1, *latent_shape), at the run's temperature."""
        with evaluating(vae, rnn):
            dreamed, _, _ = rnn.rollout(first, None, DREAM_FRAMES, rnn.config.temperature,
                                        step_generator(self.seed, "preview", device=self.device),
                                        rnn.config.decode_spread)
            frames = tensor_to_frames(vae.decode(dreamed[0]))
        half = DREAM_FRAMES // 2
        save_image_grid(self.run.preview_path("dream.png"), [frames[:half], frames[half:]])

    def losses(self) -> None:
        plot_losses(self.run.read_log(), self.run.preview_path("losses.png"))
