"""The two networks: a VAE for the look of a frame, an RNN for how latents move.

Every VAE maps float frames in [0, 1], shape (B, 3, S, S), to latents (B, z) and back.
Every RNN maps a latent sequence to the parameters of the next latent's distribution; `params` is a tuple
the same RNN's `nll`, `mean` and `sample` understand, so training and dreaming never ask which kind it is.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TRANSFORMER_HEADS, RNNConfig, VAEConfig

Params = tuple[torch.Tensor, ...]
State = tuple[torch.Tensor, torch.Tensor] | torch.Tensor | None  # LSTM (h, c); GRU h; transformer: inputs
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


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


@torch.no_grad()
def encode_frames(vae: "VAE", frames: np.ndarray, device: torch.device, bf16: bool = False,
                  progress: bool = False, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) on the CPU for every frame of a uint8 (N, S, S, 3) array, encoded in batches."""
    from tqdm import tqdm
    from .device import autocast
    mus, logvars = [], []
    for start in tqdm(range(0, len(frames), batch), desc="ENC", disable=not progress, leave=False):
        with autocast(device, bf16):
            mu, logvar = vae.encode(frames_to_tensor(frames[start:start + batch], device))
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    return torch.cat(mus), torch.cat(logvars)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension, in nats, shape of `mu`."""
    return -0.5 * (1 + logvar - mu ** 2 - logvar.exp())


def gradient_difference(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mathieu et al. 2016's gradient difference loss (alpha 2), summed over pixels, averaged over the batch.
    A pixel loss pays little for smearing an edge over a few pixels; this pays for every lost step."""
    loss = images.new_zeros(())
    for dim in (-1, -2):
        loss = loss + ((images.diff(dim=dim).abs() - targets.diff(dim=dim).abs()) ** 2).flatten(1).sum(1).mean()
    return loss


def edge_weights(targets: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights, 1 + `weight` x the target's local contrast over its batch mean, shape (B, 1, H, W).
    Thin lines and small sprites are a few pixels each: a plain pixel loss lets the decoder learn the
    background first and them last, which in a 10-minute CPU budget means never."""
    contrast = (targets - F.avg_pool2d(targets, 3, 1, 1, count_include_pad=False)).abs().sum(1, keepdim=True)
    # The floor keeps float noise on a flat batch from being blown up into weights.
    return 1 + weight * contrast / contrast.mean().clamp_min(1e-3)


def ssim_loss(images: torch.Tensor, targets: torch.Tensor, side: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel and channel (Gaussian window), summed over pixels, averaged over the batch:
    on the scale of a summed pixel loss. SSIM compares local contrast and structure, which blur destroys
    while costing a squared error little."""
    taps = torch.exp(-0.5 * ((torch.arange(side, device=images.device) - side // 2) / sigma) ** 2)
    taps = taps / taps.sum()
    window = (taps[:, None] * taps[None, :]).expand(images.shape[1], 1, side, side).contiguous()

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=x.shape[1])

    mean_x, mean_y = blur(images), blur(targets)
    var_x = blur(images * images) - mean_x ** 2
    var_y = blur(targets * targets) - mean_y ** 2
    cov = blur(images * targets) - mean_x * mean_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2))
    return ((1 - ssim) / 2).flatten(1).sum(1).mean()


class VAE(nn.Module):
    """Shared VAE machinery: reparameterisation and the loss; subclasses define the encoder and decoder."""

    config: VAEConfig

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z).float())

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(images)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode_logits(z), mu, logvar

    def loss(self, images: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, reconstruction, kl), each averaged over the batch and summed over pixels / latents; the KL
        term is weighted by `kl_weight` times `kl_scale` (below 1 while it is annealed in)."""
        mu, logvar = mu.float(), logvar.float()
        reconstruction = self.reconstruction_loss(images, logits)
        kl = gaussian_kl(mu, logvar).sum(1).mean()
        # World Models' free bits: KL below the tolerance is not penalised, so latents keep their information.
        kl_penalty = torch.clamp(kl, min=self.config.free_bits * self.config.z_dim)
        return reconstruction + self.config.kl_weight * kl_scale * kl_penalty, reconstruction, kl

    def reconstruction_loss(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The configured pixel loss (edge-weighted, plus gradient-difference and SSIM terms, if set), summed over
        pixels and averaged over the batch."""
        logits = logits.float()
        decoded = torch.sigmoid(logits)
        if self.config.reconstruction == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(logits, images, reduction="none")
        elif self.config.reconstruction == "l1":
            per_pixel = (decoded - images).abs()
        else:
            per_pixel = (decoded - images) ** 2
        if self.config.edge_weight > 0:
            per_pixel = per_pixel * edge_weights(images, self.config.edge_weight)
        reconstruction = per_pixel.flatten(1).sum(1).mean()
        if self.config.gradient_weight > 0:
            reconstruction = reconstruction + self.config.gradient_weight * gradient_difference(decoded, images)
        if self.config.ssim_weight > 0:
            reconstruction = reconstruction + self.config.ssim_weight * ssim_loss(decoded, images)
        return reconstruction


class AddCoords(nn.Module):
    """Appends each pixel's x and y, from -1 to 1, as two channels (CoordConv, Liu et al. 2018): convolutions
    alone are poor at turning a coordinate held in a latent into a position on the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        ys = torch.linspace(-1, 1, height, device=x.device, dtype=x.dtype).view(1, 1, height, 1)
        xs = torch.linspace(-1, 1, width, device=x.device, dtype=x.dtype).view(1, 1, 1, width)
        return torch.cat([x, ys.expand(batch, 1, height, width), xs.expand(batch, 1, height, width)], 1)


class ConvVAE(VAE):
    """World Models' layout: k4 s2 convolutions 32/64/128/256 down to 4x4 (one more stage per doubling), then
    one latent vector; or, with `grid`, down to a grid of latent cells that each describe their own patch."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        bottom = config.grid or 4
        stages = int(round(math.log2(config.size / bottom)))
        widths = list(config.channels[:stages]) + [config.channels[-1]] * max(0, stages - len(config.channels))
        encoder: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            encoder += [nn.Conv2d(in_channels, width, 4, 2, 1), nn.ReLU(inplace=True)]
            in_channels = width
        self.bottom = (widths[-1], bottom, bottom)
        if config.grid:
            # A map of small latent cells: the decoder stays local and translation-equivariant, so it need not
            # learn from one vector where on the image every edge goes.
            cell_channels = config.z_dim // (bottom * bottom)
            self.encoder = nn.Sequential(*encoder)
            self.to_mu = nn.Sequential(nn.Conv2d(widths[-1], cell_channels, 1), nn.Flatten())
            self.to_logvar = nn.Sequential(nn.Conv2d(widths[-1], cell_channels, 1), nn.Flatten())
            self.from_z = nn.Sequential(nn.Unflatten(1, (cell_channels, bottom, bottom)),
                                        nn.Conv2d(cell_channels, widths[-1], 3, 1, 1))
        else:
            flat = widths[-1] * bottom * bottom
            self.encoder = nn.Sequential(*encoder, nn.Flatten())
            self.to_mu = nn.Linear(flat, config.z_dim)
            self.to_logvar = nn.Linear(flat, config.z_dim)
            self.from_z = nn.Linear(config.z_dim, flat)
        decoder: list[nn.Module] = []
        outs = widths[-2::-1] + [config.refine or 3]
        coords = 2 if config.coords else 0
        for index, width in enumerate(outs):
            if coords:
                decoder.append(AddCoords())
            decoder.append(nn.ConvTranspose2d(in_channels + coords, width, 4, 2, 1))
            if index < len(outs) - 1:
                decoder.append(nn.ReLU(inplace=True))
            in_channels = width
        if config.refine:
            # The last transposed convolution draws each output pixel from a 2x2 patch of half-resolution
            # features; 3x3 convolutions at full resolution let neighbouring pixels agree on thin edges.
            decoder += [nn.ReLU(inplace=True), nn.Conv2d(config.refine, config.refine, 3, 1, 1),
                        nn.ReLU(inplace=True), nn.Conv2d(config.refine, 3, 3, 1, 1)]
        self.decoder = nn.Sequential(*decoder)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(images)
        return self.to_mu(hidden).float(), self.to_logvar(hidden).float()

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.from_z(z)).view(-1, *self.bottom)
        return self.decoder(hidden)


class DenseVAE(VAE):
    """The 2016 notebook's VAE: flattened pixels through softplus layers."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
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


class PatchDiscriminator(nn.Module):
    """A small PatchGAN critic trained from scratch beside the VAE: it scores overlapping patches as real or
    reconstructed, pushing the decoder toward sharp texture instead of the blur that pixel losses reward."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * channels, 1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


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


class CausalTransformer(nn.Module):
    """A small GPT-style transformer over the last `context` latents, for `RNNConfig.cell = "transformer"`.
    Its state is the inputs it has seen, at most `context - 1` of them: every output attends to its own input
    and up to `context - 1` before it, at the positions training windows had, so a dream of any length sees
    what training showed it."""

    def __init__(self, input_size: int, width: int, layers: int, context: int, heads: int = TRANSFORMER_HEADS):
        super().__init__()
        self.context = context
        self.embed = nn.Linear(input_size, width)
        self.position = nn.Parameter(torch.randn(context, width) * 0.02)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def _run(self, seq: torch.Tensor) -> torch.Tensor:
        length = seq.shape[1]
        hidden = self.embed(seq) + self.position[:length]
        return self.norm(self.blocks(hidden, mask=self.mask[:length, :length], is_causal=True))

    def forward(self, z: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """z (B, T, in) -> outputs (B, T, width), and the last `context - 1` inputs as the state."""
        seq = z if state is None else torch.cat([state, z], 1)
        steps = z.shape[1]
        if seq.shape[1] <= self.context:
            outputs = self._run(seq)[:, -steps:]
        else:
            # Longer than a window: the first context - 1 outputs from one window, each later one from the
            # window that ends at it.
            head = self._run(seq[:, :self.context - 1])
            windows = seq.unfold(1, self.context, 1).permute(0, 1, 3, 2)  # (B, N, context, in)
            tails = self._run(windows.flatten(0, 1))[:, -1].view(seq.shape[0], -1, head.shape[-1])
            outputs = torch.cat([head, tails], 1)[:, -steps:]
        return outputs, seq[:, max(0, seq.shape[1] - (self.context - 1)):]


class LatentRNN(nn.Module):
    """An LSTM (or GRU) over latents; subclasses choose the head and the next-latent distribution."""

    def __init__(self, config: RNNConfig, z_dim: int, head_width: int):
        super().__init__()
        self.config = config
        self.z_dim = z_dim
        if config.cell == "transformer":
            recurrent = CausalTransformer(z_dim, config.hidden, config.layers, config.seq_len)
        elif config.cell == "lnlstm":
            recurrent = LayerNormLSTM(z_dim, config.hidden, config.layers)
        else:
            recurrent = (nn.LSTM if config.cell == "lstm" else nn.GRU)(z_dim, config.hidden, config.layers,
                                                                       batch_first=True)
        # Named for its cell, so run folders written before the GRU existed still load as they are.
        setattr(self, config.cell, recurrent)
        self.head = nn.Linear(config.hidden, head_width)

    @property
    def recurrent(self) -> nn.Module:
        return getattr(self, self.config.cell)

    def forward(self, z: torch.Tensor, state: State = None,
                generator: torch.Generator | None = None) -> tuple[Params, State]:
        """z (B, T, z) -> params for each next latent (leading dims B, T), final recurrent state. While
        training with dropout, the mask is drawn from `generator`, so that a resumed run repeats it."""
        hidden, state = self.recurrent(z, state)
        if self.training and self.config.dropout > 0:
            keep = torch.rand(hidden.shape, generator=generator, device=hidden.device) >= self.config.dropout
            hidden = hidden * keep / (1 - self.config.dropout)
        return self.split_head(self.head(hidden).float()), state

    def step(self, z: torch.Tensor, state: State = None) -> tuple[Params, State]:
        """One time step: z (B, z) -> params with leading dim B. Uses the cell functions directly: for a single
        step, nn.LSTM's per-call overhead on CPU made it ~50x slower (measured), and dreaming is all single steps.
        The layer-norm LSTM and the transformer step through their own forward."""
        if self.config.cell not in ("lstm", "gru"):
            hidden, state = self.recurrent(z.unsqueeze(1), state)
            return self.split_head(self.head(hidden[:, 0]).float()), state
        lstm = self.config.cell == "lstm"
        if state is None:
            zeros = z.new_zeros(self.config.layers, z.shape[0], self.config.hidden)
            state = (zeros, zeros) if lstm else zeros
        x, hs, cs = z, [], []
        for layer in range(self.config.layers):
            weights = [getattr(self.recurrent, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih",
                                                                               "bias_hh")]
            if lstm:
                x, c_layer = torch.lstm_cell(x, (state[0][layer], state[1][layer]), *weights)
                cs.append(c_layer)
            else:
                x = torch.gru_cell(x, state[layer], *weights)
            hs.append(x)
        new_state = (torch.stack(hs), torch.stack(cs)) if lstm else torch.stack(hs)
        return self.split_head(self.head(x).float()), new_state

    @torch.no_grad()
    def rollout(self, z: torch.Tensor, state: State, steps: int, temperature: float,
                generator: torch.Generator | None = None, decode_spread: float = 1.0,
                feedback: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Dream `steps` latents after `z` (B, z), feeding each sample back. Returns the latents to decode,
        (B, steps, z): each sample's center plus `decode_spread` times its random deviation (1: the samples
        themselves); the last sample, to feed back next; and the state. `feedback`, if given, maps each sample
        before it is fed back and shown (the dreamer's decode -> encode re-projection). The random numbers for
        all steps are drawn at once: one generator call instead of two per step."""
        noise = self.draw_noise((steps, *z.shape), generator, z.device)
        shown = []
        for index in range(steps):
            params, state = self.step(z, state)
            z, center = self.sample_with_center(params, temperature, noise=tuple(n[index] for n in noise))
            if feedback is not None:
                z = feedback(z)
            shown.append(z if decode_spread == 1 else center + decode_spread * (z - center))
        return torch.stack(shown, 1), z, state

    def draw_noise(self, shape: tuple[int, ...], generator: torch.Generator | None,
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
        """A next latent drawn at `temperature`; `noise` (from draw_noise) replaces drawing from `generator`."""
        return self.sample_with_center(params, temperature, generator, noise)[0]

    def sample_with_center(self, params: Params, temperature: float, generator: torch.Generator | None = None,
                           noise: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample and the point it was drawn around, before its random spread was added."""
        raise NotImplementedError


class MDNRNN(LatentRNN):
    """World Models' MDN-RNN: per latent dimension, a mixture of K Gaussians with its own weights."""

    def __init__(self, config: RNNConfig, z_dim: int):
        super().__init__(config, z_dim, z_dim * config.gaussians * 3)

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
        uniform, normal = noise or self.draw_noise(mu.shape[:-1], generator, mu.device)
        # Inverse-CDF pick of a component per dimension: cheaper than torch.multinomial for a small K.
        cdf = F.softmax(logits / temperature, -1).cumsum(-1)
        choice = (cdf < uniform.unsqueeze(-1)).sum(-1, keepdim=True).clamp_(max=logits.shape[-1] - 1)
        mu_k = mu.gather(-1, choice).squeeze(-1)
        sigma_k = torch.exp(log_sigma.gather(-1, choice).squeeze(-1)) * math.sqrt(temperature)
        return mu_k + sigma_k * normal, mu_k


class RegressionRNN(LatentRNN):
    """The 2016 recipe: the LSTM regresses the next latent; variety comes from uniform noise when dreaming."""

    def __init__(self, config: RNNConfig, z_dim: int):
        super().__init__(config, z_dim, z_dim)

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
        uniform = (noise or self.draw_noise(prediction.shape, generator, prediction.device))[0]
        return prediction + self.config.feed_noise * temperature * (uniform * 2 - 1), prediction


VAE_KINDS = {"conv": ConvVAE, "dense": DenseVAE}
RNN_KINDS = {"mdn": MDNRNN, "regression": RegressionRNN}


def build_vae(config: VAEConfig) -> VAE:
    return VAE_KINDS[config.kind](config)


def build_rnn(config: RNNConfig, z_dim: int) -> LatentRNN:
    return RNN_KINDS[config.kind](config, z_dim)
