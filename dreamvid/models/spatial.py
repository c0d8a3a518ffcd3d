"""The spatial family's auto-encoder: a frame as a map of quantised cells, one cell per 4x4 pixels.

A 32-number latent cannot hold a clip's thin and small things (road edges, other cars, sprites): the blur is the
bottleneck's. Here every 4x4-pixel patch keeps a cell of a few channels, each rounded to a few levels (finite
scalar quantisation, Mentzer et al. 2023: no codebook to collapse, no commitment loss), so the decoder only ever
sees codes the dream model can also produce.

A cell's code is computed from its own 4x4 pixels alone (a per-cell MLP), so a part of the frame that does not
change keeps its codes exactly: with a 7x7-cell encoder, any motion nearby flipped them and the dream model had
to predict that noise (docs/results.md: 60% -> 88% of Enduro's cells unchanged from one frame to the next). The
decoder sees whole neighbourhoods and draws smooth edges across cells. Pixels come out through PixelShuffle(4)
(sub-pixel convolution, as in ESPCN), so a 64 px frame costs the convolutions of a 16x16 map.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VAEConfig
from .base import VAE
from .batch import StepBatch

CELL = 4                      # pixels per cell side: 64 px frames become 16x16 maps, 256 px ones 64x64
# Reconstruction loss weights (Delta-IRIS's tokenizer: no perceptual net, no GAN): mean L2, a little mean L1, and
# the worst pixel of each frame, which is where a small sprite or a thin line goes missing.
L1_WEIGHT = 0.1
WORST_PIXEL_WEIGHT = 0.01
# Each pixel's error also weighs 1 + EDGE_WEIGHT x its local contrast (over the frame's mean contrast): road edges,
# banks and sprites are a small share of the pixels, and a plain mean lets the decoder blur them away
# (docs/results.md: held-out sharpness 0.47 -> 0.88 on Enduro).
EDGE_WEIGHT = 4.0


class FSQ(nn.Module):
    """Finite scalar quantisation: channel c bounded to `levels[c]` values in [-1, 1], rounded with a
    straight-through gradient."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        self.levels = tuple(levels)
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        strides = [math.prod(self.levels[channel + 1:]) for channel in range(len(self.levels))]
        self.register_buffer("_strides", torch.tensor(strides).view(1, -1, 1, 1), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        levels = self._levels
        half = (levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)  # even level counts sit between the integers
        bounded = torch.tanh(z.float() + torch.atanh(offset / half)) * half - offset
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (levels // 2)

    def indices(self, values: torch.Tensor) -> torch.Tensor:
        """Values (B, C, H, W) -> the indices of their nearest levels, channel c in [0, levels[c])."""
        half = (self._levels // 2).to(values.device)
        return torch.minimum((values * half + half).round().clamp_min(0), self._levels - 1).long()

    def values(self, indices: torch.Tensor) -> torch.Tensor:
        half = (self._levels // 2).to(indices.device)
        return (indices.float() - half) / half

    @property
    def codes(self) -> int:
        """How many distinct cells there are: every combination of the channels' levels."""
        return math.prod(self.levels)

    def code(self, values: torch.Tensor) -> torch.Tensor:
        """Values (B, C, H, W) -> each cell's code (B, H, W), in [0, codes): its channels' levels as one number."""
        return (self.indices(values) * self._strides.to(values.device)).sum(1)

    def code_values(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, H, W) -> values (B, C, H, W)."""
        indices = (codes.unsqueeze(1) // self._strides.to(codes.device)) % self._levels.long().to(codes.device)
        return self.values(indices)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1),
                                  nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SpatialVAE(VAE):
    """Frames (B, 3, S, S) <-> FSQ maps (B, len(levels), S/4, S/4)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        width, channels = config.channels[0], len(config.levels)
        side = config.size // CELL
        self.latent_shape = (channels, side, side)
        pixels = 3 * CELL * CELL
        per_cell = [layer for _ in range(config.encoder_blocks) for layer in (nn.Conv2d(width, width, 1), nn.SiLU())]
        self.encoder = nn.Sequential(nn.PixelUnshuffle(CELL), nn.Conv2d(pixels, width, 1), nn.SiLU(), *per_cell,
                                     nn.Conv2d(width, channels, 1))
        self.quantise = FSQ(config.levels)
        self.decoder = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1),
                                     *[ResBlock(width) for _ in range(config.decoder_blocks)], nn.SiLU(),
                                     nn.Conv2d(width, pixels, 3, 1, 1), nn.PixelShuffle(CELL))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.quantise(self.encoder(images)), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).float().clamp(0, 1)

    def loss(self, images: torch.Tensor, batch: StepBatch | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Contrast-weighted squared error plus a little L1 and the worst pixel; {"psnr": of the batch, in dB}."""
        batch = batch or StepBatch()
        z, _ = self.encode(images)
        delta = self.decoder(z).float() - images
        squared, weight = delta.pow(2), contrast_weight(images, batch)
        per_image = lambda x: x.flatten(1).mean(1)   # noqa: E731
        loss = batch.mean(per_image(weight * squared) + L1_WEIGHT * per_image(weight * delta.abs())
                          + WORST_PIXEL_WEIGHT * squared.flatten(1).amax(1))
        psnr = -10 * torch.log10(batch.mean(per_image(squared)).detach().clamp_min(1e-10))
        return loss * images[0].numel(), {"psnr": psnr}


def contrast_weight(images: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    """(B, 1, H, W): 1 + EDGE_WEIGHT x each pixel's distance from its 3x3 neighbourhood's mean, over the batch's
    mean distance."""
    contrast = (images - F.avg_pool2d(images, 3, 1, 1, count_include_pad=False)).abs().sum(1, keepdim=True)
    return 1 + EDGE_WEIGHT * contrast / batch.mean(contrast.flatten(1).mean(1)).clamp_min(1e-3)
