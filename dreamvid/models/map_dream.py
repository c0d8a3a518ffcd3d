"""The spatial family's dream model: a convolutional GRU over FSQ latent maps that predicts, per cell and channel, a
distribution over the next map's levels, and fills a new map in a few MaskGIT rounds.

Per step: the current map (with the noise level it was trained to expect) -> features at the cell grid -> a
ConvGRU at half the grid, whose input also carries the map's mean (so its receptive field is the whole frame:
a scrolling road or a turning camera moves every cell at once) -> features of the next map. The head sees those
features plus the cells already chosen, and gives each hidden cell its levels' logits. Sampling all cells at once
and independently dissolves a frame into noise; MaskGIT (Chang et al. 2022) instead keeps, each round, only the
most confident cells and predicts the rest again given them, so a frame's cells agree.

For long rollouts, training corrupts the maps the model is conditioned on with Gaussian noise of a random level
that is given to the model as an input (GameNGen), and feeds a share of steps the model's own samples
(scheduled sampling), so that dreaming, which conditions only on its own output, is what it has seen.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RNNConfig
from .base import DreamModel
from .spatial import FSQ

State = torch.Tensor | None   # the ConvGRU's hidden map (B, hidden, H/2, W/2)


class ConvGRUCell(nn.Module):
    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(inputs + hidden, 2 * hidden, 3, 1, 1)
        self.candidate = nn.Conv2d(inputs + hidden, hidden, 3, 1, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        update, reset = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], 1)))
        return h + update * (candidate - h)


class MapDreamer(DreamModel):
    """Next-map model over (C, H, W) FSQ maps with `levels[c]` levels in channel c."""

    def __init__(self, config: RNNConfig, latent_shape: tuple[int, ...], levels: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.latent_shape = tuple(latent_shape)
        self.fsq = FSQ(levels)
        channels, width, hidden = len(levels), config.width, config.hidden
        self.embed = nn.Conv2d(channels + 1, width, 3, 1, 1)         # + the noise level
        self.down = nn.Conv2d(width, width, 4, 2, 1)
        self.context = nn.Linear(width, width)                        # the whole map's mean, to every cell
        self.gru = ConvGRUCell(width, hidden)
        self.up = nn.ConvTranspose2d(hidden, width, 4, 2, 1)
        most = max(levels)
        self.head = nn.Sequential(nn.Conv2d(2 * width + 2 * channels + 1, width, 1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, 1, 1), nn.SiLU(), nn.Conv2d(width, channels * most, 1))
        # Channel c has levels[c] of the `most` logits the head gives it; the others are never drawn.
        unused = torch.arange(most)[None, :] >= torch.tensor(levels)[:, None]
        self.register_buffer("unused_levels", unused[None, :, :, None, None], persistent=False)
        # Most cells of a map are its predecessor's: a learned bonus for each cell's current level makes "as it
        # was" the prediction to beat, so a rollout's errors persist instead of growing.
        self.copy_bonus = nn.Parameter(torch.tensor(2.0))

    # --- the recurrent core ------------------------------------------------------------------------------

    def initial_state(self, batch: int) -> torch.Tensor:
        _, height, width = self.latent_shape
        return self.up.weight.new_zeros(batch, self.config.hidden, height // 2, width // 2)

    def core(self, z: torch.Tensor, noise_level: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """One map (B, C, H, W) and the noise level (B,) it carries -> features of the next map, new state."""
        h = self.initial_state(len(z)) if state is None else state
        level = noise_level.view(-1, 1, 1, 1).expand(-1, 1, *z.shape[2:])
        x = F.silu(self.embed(torch.cat([z, level], 1)))
        coarse = F.silu(self.down(x))
        coarse = coarse + self.context(coarse.mean((2, 3)))[:, :, None, None]
        h = self.gru(coarse, h)
        anchor = self.fsq.values(self.fsq.indices(z))  # the conditioning map, back on its levels
        return torch.cat([x, F.silu(self.up(h)), anchor], 1), h

    def forward(self, z: torch.Tensor, state: State = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, State]:
        """Clean maps (B, T, C, H, W) -> features (B, T, F, H, W) predicting each next map, final state."""
        level = z.new_zeros(len(z))
        features = []
        for t in range(z.shape[1]):
            f, state = self.core(z[:, t], level, state)
            features.append(f)
        return torch.stack(features, 1), state

    def step(self, z: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        return self.core(z, z.new_zeros(len(z)), state)

    # --- the head: logits of hidden cells given the chosen ones ------------------------------------------

    def logits(self, features: torch.Tensor, known: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, C, L, H, W) of each channel's levels in the next map, given the values `known`
        where the mask `hidden` (B, 1, H, W) is 0. Levels a channel does not have get -inf."""
        out = self.head(torch.cat([features, known * (1 - hidden), hidden], 1)).float()
        out = out.view(len(out), len(self.fsq.levels), -1, *out.shape[2:])
        current = self.fsq.indices(features[:, -len(self.fsq.levels):])
        out = out + self.copy_bonus * F.one_hot(current, out.shape[2]).permute(0, 1, 4, 2, 3)
        out = out.masked_fill(self.unused_levels, -math.inf)
        return F.log_softmax(out, 2)

    def cell_nll(self, log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """NLL (B, H, W) of the map `target`, summed over its channels."""
        return -log_p.gather(2, self.fsq.indices(target).unsqueeze(2)).squeeze(2).sum(1)

    def nll(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """NLL of each map of `target` (..., C, H, W) with every cell hidden, summed over cells and channels."""
        lead = target.shape[:-3]
        features, target = params.flatten(0, len(lead) - 1), target.flatten(0, len(lead) - 1)
        hidden = target.new_ones(len(target), 1, *target.shape[2:])
        nll = self.cell_nll(self.logits(features, torch.zeros_like(target), hidden), target)
        return nll.flatten(1).sum(1).view(lead)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The most likely map, filled in MaskGIT rounds from the most confident cells."""
        return self.fill(params, temperature=0.0)

    # --- sampling ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def fill(self, features: torch.Tensor, temperature: float, generator: torch.Generator | None = None
             ) -> torch.Tensor:
        """A next map from `features`, in `sampling_steps` rounds; each round keeps the most confident of the
        cells it drew (cosine schedule). Temperature 0 takes each cell's most likely levels."""
        batch, _, height, width = features.shape
        cells, rounds = height * width, self.config.sampling_steps
        known = features.new_zeros(batch, len(self.fsq.levels), height, width)
        hidden = features.new_ones(batch, 1, height, width)
        for index in range(rounds):
            drawn, confidence = self._draw(self.logits(features, known, hidden), temperature, generator)
            still_hidden = math.floor(cells * math.cos(math.pi / 2 * (index + 1) / rounds))
            confidence = confidence.masked_fill(hidden[:, 0] == 0, float("inf")).flatten(1)
            keep = confidence.argsort(1, descending=True)[:, :cells - still_hidden]
            now_hidden = torch.ones_like(confidence).scatter_(1, keep, 0.0).view_as(hidden)
            revealed = hidden - now_hidden
            known = known + self.fsq.values(drawn) * revealed
            hidden = now_hidden
        return known

    def _draw(self, log_p: torch.Tensor, temperature: float, generator: torch.Generator | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Level indices (B, C, H, W) drawn per cell and channel, and each cell's log-probability of its draw."""
        if temperature > 0:
            uniform = torch.rand(log_p.shape, generator=generator, device=log_p.device).clamp_(1e-9, 1 - 1e-9)
            pick = (log_p / temperature - torch.log(-torch.log(uniform))).argmax(2)   # Gumbel-max
        else:
            pick = log_p.argmax(2)
        return pick, log_p.gather(2, pick.unsqueeze(2)).squeeze(2).sum(1)

    @torch.no_grad()
    def rollout(self, z: torch.Tensor, state: State, steps: int, temperature: float,
                generator: torch.Generator | None = None, decode_spread: float = 1.0,
                feedback: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Dream `steps` maps after `z` (B, C, H, W). Maps are codes, shown as drawn: `decode_spread` does not
        apply."""
        shown = []
        for _ in range(steps):
            features, state = self.step(z, state)
            z = self.fill(features, temperature, generator)
            if feedback is not None:
                z = feedback(z)
            shown.append(z)
        return torch.stack(shown, 1), z, state

    # --- training ------------------------------------------------------------------------------------------

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked cross-entropy per hidden cell: windows (B, T, C, H, W) of maps, their context corrupted by
        noise of a random level (given to the model), a share of steps conditioned on the model's own samples."""
        batch, steps = inputs.shape[:2]
        if self.config.own_samples > 0:
            inputs = self._with_own_samples(inputs, generator)
        level = torch.rand(batch, generator=generator, device=inputs.device) * self.config.context_noise
        noisy = inputs + level.view(-1, 1, 1, 1, 1) * torch.randn(inputs.shape, generator=generator,
                                                                    device=inputs.device)
        state, features = None, []
        for t in range(steps):
            f, state = self.core(noisy[:, t], level, state)
            features.append(f)
        return self._masked_loss(torch.stack(features, 1).flatten(0, 1), targets.flatten(0, 1), generator)

    def _masked_loss(self, features: torch.Tensor, targets: torch.Tensor,
                     generator: torch.Generator | None) -> torch.Tensor:
        """MaskGIT's objective: hide a random share of cells (cosine schedule), predict them from the rest."""
        batch, _, height, width = targets.shape
        share = torch.cos(math.pi / 2 * torch.rand(batch, 1, 1, 1, generator=generator, device=targets.device))
        hidden = (torch.rand(batch, 1, height, width, generator=generator, device=targets.device) < share).float()
        nll = self.cell_nll(self.logits(features, targets, hidden), targets)
        return (nll * hidden[:, 0]).sum() / hidden.sum().clamp_min(1)

    @torch.no_grad()
    def _with_own_samples(self, inputs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """`inputs` with about `own_samples` of its steps (never a window's first) replaced by the model's own
        sample of that map, drawn from the true maps before it (parallel scheduled sampling)."""
        features, _ = self(inputs[:, :-1])
        drawn = self.fill(features.flatten(0, 1), 1.0, generator).view_as(inputs[:, 1:])
        replace = torch.rand(inputs.shape[:2], generator=generator, device=inputs.device) < self.config.own_samples
        replace = replace[:, 1:].view(*replace[:, 1:].shape, 1, 1, 1)
        return torch.cat([inputs[:, :1], torch.where(replace, drawn, inputs[:, 1:])], 1)
