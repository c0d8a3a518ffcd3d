"""The networks: a VAE for the look of a frame, a dream model for how its latents move.

    base.py       VAE and DreamModel, what every family provides; frame <-> tensor conversions
    vector.py     the vector family: one latent vector per frame (2016's dense VAE, World Models' conv VAE) and an
                  LSTM over it (MDN or regression) -- the `classic` and `worldmodels` presets
    spatial.py    the spatial family's auto-encoder: a map of FSQ-quantised cells, one per 4x4 pixels
    map_dream.py  the spatial family's dream model: an MDN-LSTM moves each map's global latent, and a renderer
                  draws the next map given it, cell by cell in MaskGIT rounds -- the `default` preset
    patch_memory.py  the exact patches the source drew under each neighbourhood of codes, drawn in place of
                  the spatial decoder's where it saw one, and the nearest training patch everywhere else
    batch.py      StepBatch: a training step's batch as one process holds it: its rows' random numbers and the
                  whole batch's sums, however many processes share it

A config names its kinds (`vae.kind`, `rnn.kind`); `build_vae` and `build_rnn` build what it describes.
"""
from __future__ import annotations

from ..config import RNNConfig, VAEConfig
from .base import DreamModel, VAE, encode_frames, frames_to_tensor, tensor_to_frames
from .batch import StepBatch
from .map_dream import MapDreamer
from .spatial import SpatialVAE
from .vector import ConvVAE, DenseVAE, GaussianVAE, LatentRNN, MDNRNN, RegressionRNN, gaussian_kl, reparameterise

VAE_KINDS = {"conv": ConvVAE, "dense": DenseVAE, "spatial": SpatialVAE}
RNN_KINDS = {"mdn": MDNRNN, "regression": RegressionRNN}

__all__ = ["ConvVAE", "DenseVAE", "DreamModel", "GaussianVAE", "LatentRNN", "MDNRNN", "MapDreamer", "RegressionRNN",
           "SpatialVAE", "StepBatch", "VAE", "build_rnn", "build_vae", "encode_frames", "frames_to_tensor",
           "gaussian_kl", "reparameterise", "tensor_to_frames"]


def build_vae(config: VAEConfig) -> VAE:
    return VAE_KINDS[config.kind](config)


def build_rnn(config: RNNConfig, vae: VAE | int | tuple[int, ...]) -> DreamModel:
    """The dream model `config` describes, over the latents of `vae` (or of a latent shape: an int is a vector's
    size). A map dream model needs the VAE itself, for its quantiser's levels."""
    if config.kind == "map":
        if not isinstance(vae, SpatialVAE):
            raise ValueError("rnn.kind 'map' dreams over the maps of vae.kind 'spatial'")
        return MapDreamer(config, vae.latent_shape, vae.quantise.levels)
    shape = vae.latent_shape if isinstance(vae, VAE) else vae
    return RNN_KINDS[config.kind](config, (shape,) if isinstance(shape, int) else tuple(shape))
