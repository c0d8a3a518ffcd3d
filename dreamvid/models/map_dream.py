"""The spatial family's dream model: a few numbers that move, anchoring maps that are drawn cell by cell.

A frame is a map of FSQ cells (spatial.py). Predicting each next map cell by cell from the maps before it (a
ConvGRU with a MaskGIT head, docs/results.md) loses a clip's thin structure within a few frames: a cell that a
road edge leaves is easier to predict than the cell it moves into, so every uncertain step erases a little more.
Here every map also has a global latent g, a few numbers for its layout (the scene, where the road runs):

    summary   a VAE over one map: its cells -> g -> each cell's code. The reconstruction term makes g describe the
              whole layout, so it can anchor the renderer.
    motion    World Models' MDN-LSTM (the vector family's) over g: how the layout moves, sampled with a temperature.
    renderer  p(next map | this map, g of the next): convolutions at the cell grid and on a coarser grid that also
              sees the whole map's mean, and a head over each cell's code (all its channels' levels at once: drawn
              one channel at a time, two likely codes mix into a third that neither predicts). The head fills a
              map in MaskGIT rounds (Chang et al. 2022): each round keeps the most confident cells and predicts the
              rest given them and a summary of all chosen so far, so a frame's cells agree. Half its training
              pairs start from a map it drew itself, as every step of a dream does (OWN_MAPS).

Dreaming draws the next g from the motion model, then fills the next map given it: the layout comes from g, the
detail from the map before. The map is summarised again before the next step, so a dream conditions the motion
model on what it actually drew.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RNNConfig
from .base import DreamModel
from .batch import StepBatch
from .spatial import FSQ, ResBlock
from .vector import MDNRNN

Params = tuple[tuple[torch.Tensor, ...], torch.Tensor]   # (the motion model's mixture for the next g, this map)
State = tuple[torch.Tensor, torch.Tensor] | None          # the motion model's LSTM state
PAIRS_PER_WINDOW = 4     # the renderer is Markov in maps: a few pairs of each window teach it as much as all
LAYOUT_CHANNELS = 16     # g spread over the cell grid as a 4x4 map of this many channels
COPY_BONUS = 2.0         # initial bonus for a cell's current code: "as it was" is the prediction to beat
# Share of the renderer's training pairs whose previous map is one it drew itself. Trained only on true maps, which
# are already where the next g says, it learns to copy; in a dream it starts from its own map, lagging behind g, and
# the dream sticks (docs/results.md: Enduro's flow 0.49 -> 0.84 and frame difference 0.54 -> 0.91 of the source's).
OWN_MAPS = 0.5


class MapSummary(nn.Module):
    """A VAE over one map: its cells -> g (mu, logvar) and, for training, g -> each cell's code distribution.
    Strided convolutions down to a 4x4 grid, whatever the map's side."""

    def __init__(self, fsq: FSQ, side: int, size: int, width: int, free_bits: float = 0.5):
        super().__init__()
        self.fsq, self.free_bits = fsq, free_bits
        stages = max(1, int(math.log2(side // 4)))
        widths = [width] + [2 * width] * (stages - 1)
        down, up = [], []
        for width_in, width_out in zip([len(fsq.levels), *widths], widths):
            down += [nn.Conv2d(width_in, width_out, 4, 2, 1), nn.SiLU()]
        for width_in, width_out in zip(widths[::-1], widths[-2::-1] + [width]):
            up += [nn.SiLU(), nn.ConvTranspose2d(width_in, width_out, 4, 2, 1)]
        self.bottom = (widths[-1], side >> stages, side >> stages)
        flat = math.prod(self.bottom)
        self.encoder = nn.Sequential(*down, nn.Flatten())
        self.to_mu, self.to_logvar, self.from_g = nn.Linear(flat, size), nn.Linear(flat, size), nn.Linear(size, flat)
        self.decoder = nn.Sequential(*up, nn.SiLU(), nn.Conv2d(width, fsq.codes, 1))

    def encode(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps (N, C, H, W) -> g's mean and log-variance, (N, size) each."""
        hidden = self.encoder(maps)
        return self.to_mu(hidden).float(), self.to_logvar(hidden).float().clamp(-10, 5)

    def loss(self, maps: torch.Tensor, batch: StepBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every cell's code given a sample of g (summed over cells), plus the KL above free
        bits, per map; and that sample, detached: what the motion model and the renderer learn from."""
        mu, logvar = self.encode(maps)
        g = mu + (0.5 * logvar).exp() * batch.randn(mu.shape, mu.device)
        logits = self.decoder(self.from_g(g).view(-1, *self.bottom)).float()
        cross_entropy = batch.mean(F.cross_entropy(logits, self.fsq.code(maps), reduction="none").flatten(1).sum(1))
        kl = batch.mean((0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1))
        return cross_entropy + kl.clamp_min(self.free_bits * mu.shape[1]), g.detach()


class MapRenderer(nn.Module):
    """p(next map | this map, g of the next map), one categorical over the codes per cell."""

    def __init__(self, fsq: FSQ, size: int, width: int):
        super().__init__()
        self.fsq = fsq
        channels = len(fsq.levels)
        self.layout = nn.Linear(size, LAYOUT_CHANNELS * 16)
        self.scene = nn.Linear(size, width)
        self.embed = nn.Conv2d(channels + LAYOUT_CHANNELS, width, 3, 1, 1)
        self.fine = nn.Sequential(ResBlock(width), ResBlock(width))
        self.down = nn.Conv2d(width, width, 4, 2, 1)
        self.coarse = nn.Sequential(ResBlock(width), ResBlock(width))
        self.up = nn.ConvTranspose2d(width, width, 4, 2, 1)
        chosen = channels + 1                            # the values chosen so far and the mask of hidden cells
        self.head_in = nn.Conv2d(2 * width + channels + chosen, width, 1)
        self.head = nn.Sequential(nn.SiLU(), nn.Conv2d(width, width, 3, 1, 1), nn.SiLU(),
                                  nn.Conv2d(width, fsq.codes, 1))
        self.chosen_embed = nn.Conv2d(chosen, width, 1)
        self.chosen_summary = nn.Linear(width, width)
        self.copy_bonus = nn.Parameter(torch.tensor(COPY_BONUS))

    def features(self, previous: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """This map (B, C, H, W) and the next map's g (B, size) -> features (B, F, H, W); the last C channels are
        this map itself."""
        side = previous.shape[-1]
        layout = F.interpolate(self.layout(g).view(-1, LAYOUT_CHANNELS, 4, 4), size=(side, side), mode="bilinear")
        x = F.silu(self.embed(torch.cat([previous, layout.to(previous.dtype)], 1))) + self.scene(g)[:, :, None, None]
        x = self.fine(x)
        coarse = self.coarse(F.silu(self.down(x)))
        coarse = coarse + coarse.mean((2, 3), keepdim=True)   # the whole map reaches every cell
        return torch.cat([x, F.silu(self.up(coarse)), previous], 1)

    def head_start(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What every MaskGIT round shares, done once: the head's first layer on the features, and each cell's
        current code."""
        weight = self.head_in.weight[:, :features.shape[1]]
        current = self.fsq.code(features[:, -len(self.fsq.levels):])
        return F.conv2d(features, weight, self.head_in.bias), current

    def log_probs(self, start: tuple[torch.Tensor, torch.Tensor], known: torch.Tensor,
                  hidden: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, codes, H, W) of each cell's code, given the values `known` where the mask
        `hidden` (B, 1, H, W) is 0."""
        shared, current = start
        chosen = torch.cat([known * (1 - hidden), hidden], 1)
        summary = self.chosen_summary(F.silu(self.chosen_embed(chosen)).mean((2, 3)))[:, :, None, None]
        out = self.head(shared + F.conv2d(chosen, self.head_in.weight[:, -chosen.shape[1]:]) + summary).float()
        bonus = self.copy_bonus.float().expand(len(out), 1, *out.shape[2:])
        return F.log_softmax(out.scatter_add(1, current.unsqueeze(1), bonus), 1)

    def nll(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """NLL (B,) of the map `target` with every cell hidden, summed over cells."""
        hidden = target.new_ones(len(target), 1, *target.shape[2:])
        log_p = self.log_probs(self.head_start(features), torch.zeros_like(target), hidden)
        return -log_p.gather(1, self.fsq.code(target).unsqueeze(1)).flatten(1).sum(1)

    def loss(self, features: torch.Tensor, target: torch.Tensor, batch: StepBatch) -> torch.Tensor:
        """MaskGIT's objective: hide a random share of cells (cosine schedule), predict them from the rest; the
        mean NLL per hidden cell."""
        maps, _, height, width = target.shape
        share = torch.cos(math.pi / 2 * batch.rand((maps, 1, 1, 1), target.device))
        hidden = (batch.rand((maps, 1, height, width), target.device) < share).float()
        log_p = self.log_probs(self.head_start(features), target, hidden)
        nll = -log_p.gather(1, self.fsq.code(target).unsqueeze(1))
        hidden_cells = batch.sum(hidden.flatten(1).sum(1)).detach().clamp_min(1)
        return batch.sum((nll * hidden).flatten(1).sum(1)) / hidden_cells

    @torch.no_grad()
    def fill(self, features: torch.Tensor, rounds: int, temperature: float | torch.Tensor,
             uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """A next map from `features` in `rounds` rounds; each keeps the most confident of the cells it drew
        (cosine schedule). Round r draws each cell by inverse CDF from uniforms[r] (B, 1, H, W); with no
        uniforms, every cell takes its most likely code."""
        batch, _, height, width = features.shape
        cells = height * width
        known = features.new_zeros(batch, len(self.fsq.levels), height, width)
        hidden = features.new_ones(batch, 1, height, width)
        start = self.head_start(features)
        for index in range(rounds):
            log_p = self.log_probs(start, known, hidden)
            codes = self._draw(log_p, temperature, uniforms[index]) if uniforms is not None else log_p.max(1).indices
            confidence = log_p.gather(1, codes.unsqueeze(1)).squeeze(1)
            still_hidden = math.floor(cells * math.cos(math.pi / 2 * (index + 1) / rounds))
            confidence = confidence.masked_fill(hidden[:, 0] == 0, float("inf")).flatten(1)
            keep = confidence.topk(cells - still_hidden, 1).indices
            now_hidden = torch.ones_like(confidence).scatter_(1, keep, 0.0).view_as(hidden)
            known = known + self.fsq.code_values(codes).to(known.dtype) * (hidden - now_hidden)
            hidden = now_hidden
        return known

    @staticmethod
    def _draw(log_p: torch.Tensor, temperature: float | torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Codes (B, H, W), each cell's drawn by inverse CDF from its one uniform number (B, 1, H, W): one
        number per cell, not one per code as Gumbel-max takes. (`max`, not argmax, for the most likely: over a
        middle dim, 7x faster on CPU.)"""
        cdf = torch.softmax(log_p / temperature, 1).cumsum(1)
        return (cdf < uniform * cdf[:, -1:]).sum(1).clamp_(max=log_p.shape[1] - 1)


class MapDreamer(DreamModel):
    """Next-map model over (C, H, W) FSQ maps with `levels[c]` levels in channel c."""

    def __init__(self, config: RNNConfig, latent_shape: tuple[int, ...], levels: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.latent_shape = tuple(latent_shape)
        self.fsq = FSQ(levels)
        self.summary = MapSummary(self.fsq, latent_shape[-1], config.global_size, 2 * config.width)
        self.motion = MDNRNN(config, (config.global_size,))
        self.renderer = MapRenderer(self.fsq, config.global_size, config.width)

    def layout(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps (..., C, H, W) -> their g means (..., size)."""
        lead = maps.shape[:-3]
        return self.summary.encode(maps.reshape(-1, *maps.shape[-3:]))[0].view(*lead, -1)

    def forward(self, z: torch.Tensor, state: State = None,
                batch: StepBatch | None = None) -> tuple[Params, State]:
        """Maps (B, T, C, H, W) -> what predicts each next map, and the motion model's final state."""
        params, state = self.motion(self.layout(z), state, batch)
        return (params, z), state

    def step(self, z: torch.Tensor, state: State = None) -> tuple[Params, State]:
        params, state = self.motion.step(self.layout(z), state)
        return (params, z), state

    def nll(self, params: Params, target: torch.Tensor) -> torch.Tensor:
        """NLL of each map of `target` (..., C, H, W): its g under the motion model plus its cells under the
        renderer given that g (every cell hidden)."""
        motion, current = params
        g = self.layout(target)
        lead = target.shape[:-3]
        flat = lambda x: x.reshape(-1, *x.shape[len(lead):])   # noqa: E731
        cells = self.renderer.nll(self.renderer.features(flat(current), flat(g)), flat(target))
        return self.motion.nll(motion, g) + cells.view(lead)

    def mean(self, params: Params) -> torch.Tensor:
        """The most likely map given the motion model's mean layout, filled in MaskGIT rounds."""
        motion, current = params
        features = self.renderer.features(current, self.motion.mean(motion))
        return self.renderer.fill(features, self.config.sampling_steps, 1.0)

    def draw_noise(self, steps: int, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """A uniform and a normal number per layout number, and a uniform number per cell per MaskGIT round."""
        layout = (steps, batch, self.config.global_size)
        cells = (steps, self.config.sampling_steps, batch, 1, *self.latent_shape[1:])
        return (torch.rand(layout, generator=generator, device=device),
                torch.randn(layout, generator=generator, device=device),
                torch.rand(cells, generator=generator, device=device))

    def noise_kinds(self) -> tuple[str, ...]:
        return ("uniform", "normal", "uniform")

    def dream_step(self, z: torch.Tensor, state: State, temperature: float | torch.Tensor,
                   noise: tuple[torch.Tensor, ...], decode_spread: float = 1.0,
                   feedback: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """The next layout drawn at `temperature` (the map is filled given its center plus `decode_spread` of its
        deviation), then its cells at `temperature`."""
        uniform, normal, cells = noise
        (params, _), state = self.step(z, state)
        g, center = self.motion.sample_with_center(params, temperature, noise=(uniform, normal))
        features = self.renderer.features(z, center + decode_spread * (g - center))
        z = self.renderer.fill(features, self.config.sampling_steps, temperature, cells)
        if feedback is not None:
            z = feedback(z)
        return z, z, state

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor,
             batch: StepBatch | None = None) -> torch.Tensor:
        """Windows (B, T, C, H, W), `targets` one step on: the summary VAE on every map, the motion model on the
        window's g, the renderer on a few random pairs of consecutive maps given the next one's g. Each term per
        unit (cell, latent number, hidden cell), so none drowns the others."""
        window = torch.cat([inputs[:, :1], targets], 1)
        windows, steps = window.shape[:2]
        batch = batch or StepBatch()
        summary_loss, g = self.summary.loss(window.flatten(0, 1), batch)
        g = g.view(windows, steps, -1)
        motion_loss = self.motion.loss(g[:, :-1], g[:, 1:], batch)
        own = steps >= 3     # a map the renderer draws itself needs the map before the previous one
        t = int(own) + batch.randint(steps - 1 - int(own), (windows, PAIRS_PER_WINDOW), window.device)
        rows = torch.arange(windows, device=window.device)[:, None]
        previous = window[rows, t].flatten(0, 1)
        if own:
            previous = self._some_drawn(previous, window[rows, t - 1].flatten(0, 1), g[rows, t].flatten(0, 1), batch)
        features = self.renderer.features(previous, g[rows, t + 1].flatten(0, 1))
        render_loss = self.renderer.loss(features, window[rows, t + 1].flatten(0, 1), batch)
        cells = math.prod(window.shape[-2:])
        return summary_loss / cells + motion_loss / g.shape[-1] + render_loss

    @torch.no_grad()
    def _some_drawn(self, maps: torch.Tensor, before: torch.Tensor, g: torch.Tensor, batch: StepBatch) -> torch.Tensor:
        """`maps` (B, C, H, W), each replaced with probability OWN_MAPS by the map the renderer draws from the one
        `before` it and its g, as a dream would."""
        rounds = self.config.sampling_steps
        uniforms = batch.rand((len(maps), rounds, 1, *maps.shape[2:]), maps.device).transpose(0, 1)
        drawn = self.renderer.fill(self.renderer.features(before, g), rounds, self.config.temperature, uniforms)
        own = (batch.rand((len(maps), 1, 1, 1), maps.device) < OWN_MAPS).to(maps.dtype)
        return own * drawn.to(maps.dtype) + (1 - own) * maps
