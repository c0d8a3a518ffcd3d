"""The vector family: a frame as one latent vector (the 2016 notebook's dense VAE, World Models' conv VAE) and an
LSTM over those vectors (World Models' MDN-RNN, the 2016 regression LSTM).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RNNConfig, VAEConfig
from .base import VAE, DreamModel
from .batch import StepBatch

Params = tuple[torch.Tensor, ...]
State = tuple[torch.Tensor, torch.Tensor] | None  # the LSTM's (h, c)
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension, in nats, shape of `mu`."""
    return -0.5 * (1 + logvar - mu ** 2 - logvar.exp())


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, batch: StepBatch | None = None) -> torch.Tensor:
    """A sample of N(mu, exp(logvar)), its randomness drawn from `batch`."""
    eps = (batch or StepBatch()).randn(mu.shape, mu.device, mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


class GaussianVAE(VAE):
    """Shared machinery of a VAE with a Gaussian posterior over one latent vector: reparameterisation and the loss;
    subclasses define the encoder and decoder."""

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z).float())

    def forward(self, images: torch.Tensor, batch: StepBatch | None = None):
        mu, logvar = self.encode(images)
        return self.decode_logits(reparameterise(mu, logvar, batch)), mu, logvar

    def loss(self, images: torch.Tensor, batch: StepBatch | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of a batch (summed over pixels and latents, averaged over the batch) and the parts
        worth reporting: {"kl": the KL divergence, before free bits}."""
        batch = batch or StepBatch()
        logits, mu, logvar = self(images, batch)
        kl = batch.mean(gaussian_kl(mu.float(), logvar.float()).flatten(1).sum(1))
        # World Models' free bits: KL below the tolerance is not penalised, so latents keep their information.
        kl_penalty = torch.clamp(kl, min=self.config.free_bits * math.prod(self.latent_shape))
        return batch.mean(self.reconstruction_loss(images, logits)) + kl_penalty, {"kl": kl}

    def reconstruction_loss(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The configured pixel loss of each image, summed over its pixels."""
        logits = logits.float()
        if self.config.reconstruction == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(logits, images, reduction="none")
        else:
            per_pixel = (torch.sigmoid(logits) - images) ** 2
        return per_pixel.flatten(1).sum(1)


class ConvVAE(GaussianVAE):
    """World Models' layout: k4 s2 convolutions 32/64/128/256 down to 4x4 (one more stage per doubling), then
    one latent vector."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.latent_shape = (config.z_dim,)
        stages = int(round(math.log2(config.size / 4)))
        widths = list(config.channels[:stages]) + [config.channels[-1]] * max(0, stages - len(config.channels))
        encoder: list[nn.Module] = []
        for width_in, width in zip([3, *widths], widths):
            encoder += [nn.Conv2d(width_in, width, 4, 2, 1), nn.ReLU(inplace=True)]
        self.bottom = (widths[-1], 4, 4)
        flat = math.prod(self.bottom)
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        self.to_mu = nn.Linear(flat, config.z_dim)
        self.to_logvar = nn.Linear(flat, config.z_dim)
        self.from_z = nn.Linear(config.z_dim, flat)
        outs = [*widths[-2::-1], 3]
        decoder: list[nn.Module] = []
        for width_in, width in zip(widths[::-1], outs):
            decoder += [nn.ConvTranspose2d(width_in, width, 4, 2, 1), nn.ReLU(inplace=True)]
        self.decoder = nn.Sequential(*decoder[:-1])  # logits out: no ReLU after the last layer

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(images)
        return self.to_mu(hidden).float(), self.to_logvar(hidden).float()

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.from_z(z)).view(-1, *self.bottom)
        return self.decoder(hidden)


class DenseVAE(GaussianVAE):
    """The 2016 notebook's VAE: flattened pixels through softplus layers."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.latent_shape = (config.z_dim,)
        pixels = 3 * config.size * config.size
        widths = [pixels, *config.hidden]
        self.encoder = nn.Sequential(nn.Flatten(), *_softplus_stack(widths))
        self.to_mu = nn.Linear(widths[-1], config.z_dim)
        self.to_logvar = nn.Linear(widths[-1], config.z_dim)
        self.decoder = nn.Sequential(*_softplus_stack([config.z_dim, *config.hidden[::-1]]),
                                     nn.Linear(config.hidden[0], pixels))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(images)
        return self.to_mu(hidden).float(), self.to_logvar(hidden).float()

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        size = self.config.size
        return self.decoder(z).view(-1, 3, size, size)


def _softplus_stack(widths: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.Softplus()]
    return layers


class LayerNormLSTM(nn.Module):
    """An LSTM with layer-normalised gate inputs and cell output (Ba et al. 2016), for `RNNConfig.cell =
    "lnlstm"`. Stepped in Python, so it trains slower than nn.LSTM; same (h, c) state layout."""

    def __init__(self, input_size: int, hidden: int, layers: int):
        super().__init__()
        self.hidden = hidden
        self.input_maps = nn.ModuleList(nn.Linear(input_size if layer == 0 else hidden, 4 * hidden, bias=False)
                                        for layer in range(layers))
        self.hidden_maps = nn.ModuleList(nn.Linear(hidden, 4 * hidden, bias=False) for _ in range(layers))
        self.input_norms = nn.ModuleList(nn.LayerNorm(4 * hidden) for _ in range(layers))
        self.hidden_norms = nn.ModuleList(nn.LayerNorm(4 * hidden) for _ in range(layers))
        self.cell_norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        with torch.no_grad():
            for norm in self.hidden_norms:
                norm.bias[hidden:2 * hidden] = 1.0  # forget gates start open, as is usual for LSTMs

    def forward(self, z: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """z (B, T, in) -> outputs (B, T, hidden), final (h, c) with shape (layers, B, hidden) each."""
        layers = len(self.input_maps)
        if state is None:
            zeros = z.new_zeros(layers, z.shape[0], self.hidden)
            state = (zeros, zeros)
        x, hs, cs = z, [], []
        for layer in range(layers):
            gate_inputs = self.input_norms[layer](self.input_maps[layer](x))  # every step at once
            h, c = state[0][layer], state[1][layer]
            outputs = []
            for t in range(z.shape[1]):
                gates = gate_inputs[:, t] + self.hidden_norms[layer](self.hidden_maps[layer](h))
                i, f, g, o = gates.chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(self.cell_norms[layer](c))
                outputs.append(h)
            x = torch.stack(outputs, 1)
            hs.append(h)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))


class LatentRNN(DreamModel):
    """An LSTM over latents; subclasses choose the head and the next-latent distribution.

    A dream model owns what it is trained and scored on: `loss` for a batch of windows and `sequence_nll` for a
    held-out stretch, so the training loop never asks which kind it is."""

    def __init__(self, config: RNNConfig, latent_shape: tuple[int, ...], head_width: int):
        super().__init__()
        self.config = config
        (self.z_dim,) = latent_shape  # an LSTM steps over latent vectors
        if config.cell == "lnlstm":
            recurrent = LayerNormLSTM(self.z_dim, config.hidden, config.layers)
        else:
            recurrent = nn.LSTM(self.z_dim, config.hidden, config.layers, batch_first=True)
        # Named for its cell (weights "lstm.*" or "lnlstm.*"), as run folders of every version have them.
        setattr(self, config.cell, recurrent)
        self.head = nn.Linear(config.hidden, head_width)

    @property
    def recurrent(self) -> nn.Module:
        return getattr(self, self.config.cell)

    def forward(self, z: torch.Tensor, state: State = None,
                batch: StepBatch | None = None) -> tuple[Params, State]:
        """z (B, T, z) -> params for each next latent (leading dims B, T), final recurrent state. While
        training with dropout, the mask is drawn from `batch`, so that a resumed run repeats it."""
        hidden, state = self.recurrent(z, state)
        if self.training and self.config.dropout > 0:
            keep = (batch or StepBatch()).rand(hidden.shape, hidden.device) >= self.config.dropout
            hidden = hidden * keep / (1 - self.config.dropout)
        return self.split_head(self.head(hidden).float()), state

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor,
             batch: StepBatch | None = None) -> torch.Tensor:
        """The mean NLL per step of `targets` (B, T, z), each predicted from `inputs` up to it."""
        batch = batch or StepBatch()
        params, _ = self(inputs, batch=batch)
        return batch.mean(self.nll(params, targets).mean(1))

    def step(self, z: torch.Tensor, state: State = None) -> tuple[Params, State]:
        """One time step: z (B, z) -> params with leading dim B. An nn.LSTM is stepped through its cell functions:
        for a single step its per-call overhead on CPU made it ~50x slower (measured), and dreaming is all single
        steps. The layer-norm LSTM steps through its own forward."""
        if self.config.cell != "lstm":
            hidden, state = self.recurrent(z.unsqueeze(1), state)
            return self.split_head(self.head(hidden[:, 0]).float()), state
        if state is None:
            zeros = z.new_zeros(self.config.layers, z.shape[0], self.config.hidden)
            state = (zeros, zeros)
        x, hs, cs = z, [], []
        for layer in range(self.config.layers):
            weights = [getattr(self.recurrent, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih",
                                                                               "bias_hh")]
            x, c_layer = torch.lstm_cell(x, (state[0][layer], state[1][layer]), *weights)
            hs.append(x)
            cs.append(c_layer)
        return self.split_head(self.head(x).float()), (torch.stack(hs), torch.stack(cs))

    def dream_step(self, z: torch.Tensor, state: State, temperature: float | torch.Tensor,
                   noise: tuple[torch.Tensor, ...], decode_spread: float = 1.0,
                   feedback: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Shows the sample's center plus `decode_spread` times its random deviation (1: the sample itself)."""
        params, state = self.step(z, state)
        z, center = self.sample_with_center(params, temperature, noise=noise)
        if feedback is not None:
            z = feedback(z)
        return (z if decode_spread == 1 else center + decode_spread * (z - center)), z, state

    def draw_noise(self, steps: int, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        return self._noise((steps, batch, self.z_dim), generator, device)

    def noise_kinds(self) -> tuple[str, ...]:
        return ("uniform", "normal")

    def _noise(self, shape: tuple[int, ...], generator: torch.Generator | None,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """Uniform and normal numbers for `sample`, shaped like the latents it will produce."""
        return (torch.rand(shape, generator=generator, device=device),
                torch.randn(shape, generator=generator, device=device))

    def split_head(self, out: torch.Tensor) -> Params:
        raise NotImplementedError

    def nll(self, params: Params, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: Params, temperature: float, generator: torch.Generator | None = None,
               noise: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """A next latent drawn at `temperature`; `noise` (one step of draw_noise) replaces drawing from
        `generator`."""
        return self.sample_with_center(params, temperature, generator, noise)[0]

    def sample_with_center(self, params: Params, temperature: float, generator: torch.Generator | None = None,
                           noise: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample and the point it was drawn around, before its random spread was added."""
        raise NotImplementedError


class MDNRNN(LatentRNN):
    """World Models' MDN-RNN: per latent dimension, a mixture of K Gaussians with its own weights."""

    def __init__(self, config: RNNConfig, latent_shape: tuple[int, ...]):
        super().__init__(config, latent_shape, math.prod(latent_shape) * config.gaussians * 3)

    def split_head(self, out: torch.Tensor) -> Params:
        out = out.view(*out.shape[:-1], self.z_dim, self.config.gaussians, 3)
        logits, mu, log_sigma = out.unbind(-1)
        return logits, mu, log_sigma.clamp(-7.0, 5.0)

    def nll(self, params: Params, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of `target`, summed over latent dimensions."""
        logits, mu, log_sigma = params
        z = target.unsqueeze(-1)
        log_normal = -0.5 * ((z - mu) * torch.exp(-log_sigma)) ** 2 - log_sigma - LOG_SQRT_2PI
        return -torch.logsumexp(F.log_softmax(logits, -1) + log_normal, -1).sum(-1)

    def mean(self, params: Params) -> torch.Tensor:
        logits, mu, _ = params
        return (F.softmax(logits, -1) * mu).sum(-1)

    def sample_with_center(self, params: Params, temperature: float, generator: torch.Generator | None = None,
                           noise: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """World Models' temperature: logits divided by tau, sigma scaled by sqrt(tau). The center is the mean
        of the picked component."""
        logits, mu, log_sigma = params
        uniform, normal = noise or self._noise(mu.shape[:-1], generator, mu.device)
        # Inverse-CDF pick of a component per dimension: cheaper than torch.multinomial for a small K.
        cdf = F.softmax(logits / temperature, -1).cumsum(-1)
        choice = (cdf < uniform.unsqueeze(-1)).sum(-1, keepdim=True).clamp_(max=logits.shape[-1] - 1)
        mu_k = mu.gather(-1, choice).squeeze(-1)
        sigma_k = torch.exp(log_sigma.gather(-1, choice).squeeze(-1)) * temperature ** 0.5
        return mu_k + sigma_k * normal, mu_k


class RegressionRNN(LatentRNN):
    """The 2016 recipe: the LSTM regresses the next latent; variety comes from uniform noise when dreaming."""

    def __init__(self, config: RNNConfig, latent_shape: tuple[int, ...]):
        super().__init__(config, latent_shape, math.prod(latent_shape))

    def split_head(self, out: torch.Tensor) -> Params:
        return (out,)

    def nll(self, params: Params, target: torch.Tensor) -> torch.Tensor:
        """Half the squared error, summed over dimensions: the Gaussian NLL up to a constant."""
        return 0.5 * ((params[0] - target) ** 2).sum(-1)

    def mean(self, params: Params) -> torch.Tensor:
        return params[0]

    def sample_with_center(self, params: Params, temperature: float, generator: torch.Generator | None = None,
                           noise: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        prediction = params[0]
        uniform = (noise or self._noise(prediction.shape, generator, prediction.device))[0]
        return prediction + self.config.feed_noise * temperature * (uniform * 2 - 1), prediction
