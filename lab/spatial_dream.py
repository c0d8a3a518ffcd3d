"""Lab screen (Spatial issue): a convolutional recurrent dream model over FSQ latent maps, on frozen latents.

Loads a spatial auto-encoder saved by spatial_vae.py, encodes the clip, trains a ConvGRU dream model with
MaskGIT-style sampling of the next map for a fixed number of steps, and scores a rollout against the source.

    python lab/spatial_dream.py --clip enduro --vae fsq4 --variants base --steps 400
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from dreamvid.config import RNNConfig
from dreamvid.models.map_dream import MapDreamer

import spatial_vae as V
from clips import load_clip

OUT = Path("/tmp/dreamvid-lab/dream")
BATCH = 16
DREAM_LEVEL = 0.0


VARIANTS = {
    "base": dict(),
    "noise": dict(context_noise=0.5),
    "noise+own": dict(context_noise=0.5, own_samples=0.25),
    "wide": dict(width=64, hidden=96, context_noise=0.5),
    "small": dict(width=32, hidden=48, context_noise=0.3),
    "small-base": dict(width=32, hidden=48),
    "gate": dict(gate=True),
    "gate-noise": dict(gate=True, context_noise=0.3),
    "gate-noise-own": dict(gate=True, context_noise=0.3, own_samples=0.2),
    "bonus4": dict(gate=False, bonus=4.0),
    "flip": dict(gate="flip", context_noise=0.3),
    "latent": dict(gate="latent"),
    "latent-noise": dict(gate="latent", context_noise=0.3),
    "latent-b0.1": dict(gate="latent", kl=0.1),
    "joint": dict(gate="joint"),
    "joint-noise": dict(gate="joint", context_noise=0.3),
    "joint-noise-own": dict(gate="joint", context_noise=0.3, own_samples=0.2),
    "fast": dict(gate="fast"),
    "fast-own": dict(gate="fast", own_samples=0.25),
    "fast-noise-own": dict(gate="fast", context_noise=0.3, own_samples=0.25),
    "fast-wide": dict(gate="fast", width=48, hidden=64),
    "stack": dict(gate="stack"),
    "global": dict(gate="global"),
    "global-8": dict(gate="global", sampling_steps=8),
}
LATENT = 32          # "latent" variants: size of the per-frame global latent
CELL_TEMPERATURE = 0.0


class GatedMapDreamer(MapDreamer):
    """Lever: the head also gives each cell and channel its own bonus for keeping its current level (a copy
    gate), on top of the shared learned bonus, initialised at `bonus`."""

    def __init__(self, config, latent_shape, levels, bonus=4.0):
        super().__init__(config, latent_shape, levels)
        last = self.head[-1]
        self.head[-1] = nn.Conv2d(last.in_channels, last.out_channels + len(levels), 1)
        self.copy_bonus.data.fill_(bonus)

    def _head_start(self, features):   # the shared-round split does not apply to this head
        return features

    def _round_logits(self, features, known, hidden):
        return self.logits(features, known, hidden)

    def logits(self, features, known, hidden):
        channels = len(self.fsq.levels)
        out = self.head(torch.cat([features, known * (1 - hidden), hidden], 1)).float()
        logits, bonus = out[:, :-channels], out[:, -channels:]
        logits = logits.view(len(out), channels, -1, *out.shape[2:])
        current = self.fsq.indices(features[:, -channels:])
        keep = F.one_hot(current, logits.shape[2]).permute(0, 1, 4, 2, 3)
        logits = logits + (self.copy_bonus + bonus).unsqueeze(2) * keep
        return F.log_softmax(logits.masked_fill(self.unused_levels, -math.inf), 2)


class FlipGatedMapDreamer(GatedMapDreamer):
    """Lever: the context is corrupted the way sampling corrupts it, by code flips: a random share (up to
    `context_noise`) of cells take random levels, that share given as the noise level; dreaming tells the model
    its inputs carry `dream_level`."""

    dream_level = 0.0

    def corrupt(self, inputs, level, generator):
        flip = torch.rand((*inputs.shape[:2], 1, *inputs.shape[3:]), generator=generator) < level.view(-1, 1, 1, 1, 1)
        levels = self.fsq._levels.view(1, 1, -1, 1, 1)
        random = (torch.rand(inputs.shape, generator=generator) * levels).floor().clamp_max(levels - 1)
        random = (random - levels // 2) / (levels // 2)
        return torch.where(flip, random, inputs)

    def loss(self, inputs, targets, generator=None):
        batch, steps = inputs.shape[:2]
        level = torch.rand(batch, generator=generator) * self.config.context_noise
        noisy = self.corrupt(inputs, level, generator)
        state, features = None, []
        for t in range(steps):
            f, state = self.core(noisy[:, t], level, state)
            features.append(f)
        return self._masked_loss(torch.stack(features, 1).flatten(0, 1), targets.flatten(0, 1), generator)

    def step(self, z, state=None):
        return self.core(z, z.new_full((len(z),), self.dream_level), state)


class LatentMapDreamer(MapDreamer):
    """Lever: a per-frame global latent carries the step's randomness (SVG-LP, Denton & Fergus 2018). Training
    infers it from the next map (posterior) with a KL to a prior given the past; dreaming draws it from the
    prior at the temperature and then fills the cells nearly greedily (CELL_TEMPERATURE), so one draw decides
    how the whole frame moves and the cells agree on it."""

    def __init__(self, config, latent_shape, levels, kl_weight=1.0):
        super().__init__(config, latent_shape, levels)
        self.kl_weight = kl_weight
        channels, width = len(levels), config.width
        features = 2 * width + channels
        self.prior = nn.Linear(features, 2 * LATENT)
        self.posterior = nn.Sequential(nn.Conv2d(features + channels, width, 3, 2, 1), nn.SiLU(),
                                       nn.Conv2d(width, width, 3, 2, 1), nn.SiLU())
        self.posterior_out = nn.Linear(width + features, 2 * LATENT)
        self.film = nn.Linear(LATENT, 2 * features)
        nn.init.zeros_(self.film.weight), nn.init.zeros_(self.film.bias)

    def modulate(self, f, latent):
        scale, shift = self.film(latent).chunk(2, 1)
        return f * (1 + scale[:, :, None, None]) + shift[:, :, None, None]

    def prior_of(self, f):
        return self.prior(f.mean((2, 3)).float()).chunk(2, 1)

    def posterior_of(self, f, target):
        pooled = self.posterior(torch.cat([f, target], 1)).mean((2, 3))
        return self.posterior_out(torch.cat([pooled, f.mean((2, 3))], 1).float()).chunk(2, 1)

    def loss(self, inputs, targets, generator=None):
        batch, steps = inputs.shape[:2]
        level = torch.rand(batch, generator=generator) * self.config.context_noise
        noisy = inputs + level.view(-1, 1, 1, 1, 1) * torch.randn(inputs.shape, generator=generator)
        state, features = None, []
        for t in range(steps):
            f, state = self.core(noisy[:, t], level, state)
            features.append(f)
        f, target = torch.stack(features, 1).flatten(0, 1), targets.flatten(0, 1)
        (pm, plv), (qm, qlv) = self.prior_of(f), self.posterior_of(f, target)
        latent = qm + (0.5 * qlv).exp() * torch.randn(qm.shape, generator=generator)
        kl = 0.5 * (plv - qlv + ((qlv.exp() + (qm - pm) ** 2) / plv.exp()) - 1).sum(1).mean()
        cells = target.shape[-1] * target.shape[-2]
        return self._masked_loss(self.modulate(f, latent), target, generator) + self.kl_weight * kl / cells

    @torch.no_grad()
    def rollout(self, z, state, steps, temperature, generator=None, decode_spread=1.0, feedback=None):
        shown = []
        for _ in range(steps):
            f, state = self.step(z, state)
            mean, log_var = self.prior_of(f)
            latent = mean + temperature * (0.5 * log_var).exp() * torch.randn(mean.shape, generator=generator)
            z = self.fill(self.modulate(f, latent), CELL_TEMPERATURE, generator)
            shown.append(z)
        return torch.stack(shown, 1), z, state

    def nll(self, params, target):   # the prior's mean latent, a lower bound is not worth the code here
        lead = target.shape[:-3]
        f = params.flatten(0, len(lead) - 1)
        return super().nll(self.modulate(f, self.prior_of(f)[0]).view_as(params), target)


class JointMapDreamer(MapDreamer):
    """Lever: one categorical per cell over the joint code (all channels' levels at once), not one per channel.
    Channels drawn independently mix two likely codes into a third that neither predicts: at temperature 0 a cell
    keeps its code, above it the mixtures dissolve the frame."""

    def __init__(self, config, latent_shape, levels, bonus=2.0):
        super().__init__(config, latent_shape, levels)
        last = self.head[-1]
        self.codes = math.prod(levels)
        self.head[-1] = nn.Conv2d(last.in_channels, self.codes, 1)
        strides = [math.prod(levels[c + 1:]) for c in range(len(levels))]
        self.register_buffer("strides", torch.tensor(strides).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("level_counts", torch.tensor(levels).view(1, -1, 1, 1), persistent=False)
        self.copy_bonus.data.fill_(bonus)

    def joint(self, indices):
        return (indices * self.strides).sum(1)

    def split(self, joint):
        return (joint.unsqueeze(1) // self.strides) % self.level_counts

    def _head_start(self, features):
        first, channels = self.head[0], len(self.fsq.levels)
        start = F.conv2d(features, first.weight[:, :features.shape[1]], first.bias)
        return start, self.joint(self.fsq.indices(features[:, -channels:]))

    def _round_logits(self, head_start, known, hidden):
        start, current = head_start
        first = self.head[0]
        chosen = torch.cat([known * (1 - hidden), hidden], 1)
        out = self.head[1:](start + F.conv2d(chosen, first.weight[:, -chosen.shape[1]:])).float()
        bonus = self.copy_bonus.float().expand(len(out), 1, *out.shape[2:])
        return F.log_softmax(out.scatter_add(1, current.unsqueeze(1), bonus), 1)

    def cell_nll(self, log_p, target):
        return -log_p.gather(1, self.joint(self.fsq.indices(target)).unsqueeze(1)).squeeze(1)

    def _draw(self, log_p, temperature, generator):
        if temperature > 0:
            uniform = torch.rand(log_p.shape, generator=generator, device=log_p.device).clamp_(1e-9, 1 - 1e-9)
            pick = (log_p / temperature - torch.log(-torch.log(uniform))).max(1).indices
        else:
            pick = log_p.max(1).indices
        return self.split(pick), log_p.gather(1, pick.unsqueeze(1)).squeeze(1)


class FastJointMapDreamer(JointMapDreamer):
    """JointMapDreamer whose state-free convolutions run once over a whole window (B*T maps), and whose own-sample
    share is drawn in one pass (every cell at once from the teacher-forced prediction, no MaskGIT rounds)."""

    def encode_inputs(self, z, level):
        lev = level.view(-1, 1, 1, 1).expand(-1, 1, *z.shape[2:])
        x = F.silu(self.embed(torch.cat([z, lev], 1)))
        coarse = F.silu(self.down(x))
        return x, coarse + self.context(coarse.mean((2, 3)))[:, :, None, None]

    def run(self, z, level, state):
        batch, steps = z.shape[:2]
        x, coarse = self.encode_inputs(z.flatten(0, 1), level.repeat_interleave(steps))
        coarse = coarse.view(batch, steps, *coarse.shape[1:])
        h = self.initial_state(batch) if state is None else state
        hs = []
        for t in range(steps):
            h = self.gru(coarse[:, t], h)
            hs.append(h)
        anchor = self.fsq.values(self.fsq.indices(z.flatten(0, 1)))
        f = torch.cat([x, F.silu(self.up(torch.stack(hs, 1).flatten(0, 1))), anchor], 1)
        return f.view(batch, steps, *f.shape[1:]), h

    def forward(self, z, state=None, generator=None):
        return self.run(z, z.new_zeros(len(z)), state)

    def loss(self, inputs, targets, generator=None):
        batch = len(inputs)
        if self.config.own_samples > 0:
            inputs = self._cheap_own_samples(inputs, generator)
        level = torch.rand(batch, generator=generator) * self.config.context_noise
        noisy = inputs + level.view(-1, 1, 1, 1, 1) * torch.randn(inputs.shape, generator=generator)
        features, _ = self.run(noisy, level, None)
        return self._masked_loss(features.flatten(0, 1), targets.flatten(0, 1), generator)

    @torch.no_grad()
    def _cheap_own_samples(self, inputs, generator):
        features, _ = self(inputs[:, :-1])
        f = features.flatten(0, 1)
        hidden = f.new_ones(len(f), 1, *f.shape[2:])
        known = f.new_zeros(len(f), len(self.fsq.levels), *f.shape[2:])
        drawn, _ = self._draw(self.logits(f, known, hidden), 1.0, generator)
        drawn = self.fsq.values(drawn).view_as(inputs[:, 1:])
        replace = torch.rand(inputs.shape[:2], generator=generator) < self.config.own_samples
        replace = replace[:, 1:].view(*replace[:, 1:].shape, 1, 1, 1)
        return torch.cat([inputs[:, :1], torch.where(replace, drawn.to(inputs.dtype), inputs[:, 1:])], 1)


class StackedJointMapDreamer(FastJointMapDreamer):
    """Lever: each step's input also carries the change from the map before it (frame stacking, as DIAMOND's
    context frames), so motion is seen directly instead of only through the recurrent state."""

    def __init__(self, config, latent_shape, levels, bonus=2.0):
        super().__init__(config, latent_shape, levels, bonus)
        channels = len(levels)
        self.embed = nn.Conv2d(2 * channels + 1, config.width, 3, 1, 1)

    def encode_inputs(self, z, level):
        change = z - self._pair.flatten(0, 1).to(z.dtype)
        lev = level.view(-1, 1, 1, 1).expand(-1, 1, *z.shape[2:])
        x = F.silu(self.embed(torch.cat([z, change, lev], 1)))
        coarse = F.silu(self.down(x))
        return x, coarse + self.context(coarse.mean((2, 3)))[:, :, None, None]

    def step(self, z, state=None):
        previous = z if state is None else state[1]
        self._pair = previous.unsqueeze(1)
        f, h = FastJointMapDreamer.run(self, z.unsqueeze(1), z.new_zeros(len(z)), None if state is None else state[0])
        return f[:, 0], (h, z)

    def forward(self, z, state=None, generator=None):
        if state is not None:
            first = state[1].unsqueeze(1)
        else:
            first = z[:, :1]
        self._pair = torch.cat([first, z[:, :-1]], 1)
        f, h = FastJointMapDreamer.run(self, z, z.new_zeros(len(z)), None if state is None else state[0])
        return f, (h, z[:, -1])

    def loss(self, inputs, targets, generator=None):
        batch = len(inputs)
        if self.config.own_samples > 0:
            inputs = self._cheap_own_samples(inputs, generator)
        level = torch.rand(batch, generator=generator) * self.config.context_noise
        noisy = inputs + level.view(-1, 1, 1, 1, 1) * torch.randn(inputs.shape, generator=generator)
        self._pair = torch.cat([noisy[:, :1], noisy[:, :-1]], 1)
        features, _ = FastJointMapDreamer.run(self, noisy, level, None)
        return self._masked_loss(features.flatten(0, 1), targets.flatten(0, 1), generator)


RANDOM_ORDER = False


class GlobalHeadMapDreamer(FastJointMapDreamer):
    """Lever: the head also sees a summary of every cell chosen so far (mean of a per-cell embedding), so the cells
    of a MaskGIT fill agree across the whole frame (one scene colour), not only with their neighbours."""

    def __init__(self, config, latent_shape, levels, bonus=2.0):
        super().__init__(config, latent_shape, levels, bonus)
        channels, width = len(levels), config.width
        self.chosen_embed = nn.Conv2d(channels + 1, width, 1)
        self.chosen_global = nn.Linear(width, width)

    def _round_logits(self, head_start, known, hidden):
        start, current = head_start
        first = self.head[0]
        chosen = torch.cat([known * (1 - hidden), hidden], 1)
        summary = self.chosen_global(F.silu(self.chosen_embed(chosen)).mean((2, 3)))[:, :, None, None]
        out = self.head[1:](start + F.conv2d(chosen, first.weight[:, -chosen.shape[1]:]) + summary).float()
        bonus = self.copy_bonus.float().expand(len(out), 1, *out.shape[2:])
        return F.log_softmax(out.scatter_add(1, current.unsqueeze(1), bonus), 1)

    def _draw(self, log_p, temperature, generator):
        pick, confidence = super()._draw(log_p, temperature, generator)
        if RANDOM_ORDER:   # reveal cells in random order: MaskGIT's confidence order favours the likeliest codes
            confidence = torch.rand(confidence.shape, generator=generator)
        return pick, confidence


def make_model(variant, levels, side, sampling_steps):
    fields = dict(VARIANTS[variant])
    gated, bonus, kl = fields.pop("gate", False), fields.pop("bonus", 4.0), fields.pop("kl", 1.0)
    config = RNNConfig(kind="map", **{"hidden": 48, "width": 32, "sampling_steps": sampling_steps, "seq_len": 16,
                                      **fields})
    if gated == "global":
        return GlobalHeadMapDreamer(config, (len(levels), side, side), tuple(levels), 2.0)
    if gated == "stack":
        return StackedJointMapDreamer(config, (len(levels), side, side), tuple(levels), 2.0)
    if gated == "fast":
        return FastJointMapDreamer(config, (len(levels), side, side), tuple(levels), 2.0)
    if gated == "joint":
        return JointMapDreamer(config, (len(levels), side, side), tuple(levels), bonus if "bonus" in VARIANTS[variant] else 2.0)
    if gated == "latent":
        return LatentMapDreamer(config, (len(levels), side, side), tuple(levels), kl)
    if gated == "flip":
        model = FlipGatedMapDreamer(config, (len(levels), side, side), tuple(levels), bonus)
        model.dream_level = DREAM_LEVEL
        return model
    if gated:
        return GatedMapDreamer(config, (len(levels), side, side), tuple(levels), bonus)
    return MapDreamer(config, (len(levels), side, side), tuple(levels))


def encode_clip(vae, frames):
    vae.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(frames), 256):
            out.append(vae.encode(V.to_tensor(frames[start:start + 256]))[0])
    return torch.cat(out)


def decode(vae, z):
    with torch.no_grad():
        return torch.cat([vae.decoder(z[i:i + 256]).clamp(0, 1) for i in range(0, len(z), 256)]).mul(255).round() \
            .byte().permute(0, 2, 3, 1).numpy()


def train_dreamer(variant, z_train, levels, steps, seed, batch=16, window=16, lr=2e-3, sampling_steps=4,
                  seconds=None, bf16=False):
    batch = BATCH
    torch.manual_seed(seed)
    model = make_model(variant, levels, z_train.shape[-1], sampling_steps)
    if variant == "bonus4":
        model.copy_bonus.data.fill_(4.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    started, step = time.monotonic(), 0
    while (step < steps) if seconds is None else (time.monotonic() - started < seconds):
        step += 1
        starts = torch.randint(len(z_train) - window - 1, (batch,), generator=generator)
        win = z_train[starts[:, None] + torch.arange(window + 1)]  # (B, T+1, C, H, W)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = model.loss(win[:, :-1], win[:, 1:], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0:
            print(f"  step {step} loss {loss.item():.3f}", flush=True)
    model.trained_steps = step
    return model.eval()


def copy_nll(z_all, first_val, levels):
    """Per-cell NLL of the best constant-rate copy model on the held-out maps: keep each channel's level with the
    clip's own keep rate, else any other level uniformly."""
    indices = ((z_all * (torch.tensor(levels)[None, :, None, None] // 2)).round()).long()
    same = (indices[1:] == indices[:-1]).float()
    total = 0.0
    for c, n in enumerate(levels):
        keep = same[:first_val - 1, c].mean().clamp(1e-4, 1 - 1e-4)
        val = same[first_val - 1:, c]
        total += -(val * keep.log() + (1 - val) * ((1 - keep) / (n - 1)).log()).mean().item()
    return total


@torch.no_grad()
def heldout_nll(model, z_all, first_val):
    """Per-cell NLL (nats, summed over channels) of each held-out map with every cell hidden."""
    context = z_all[max(0, first_val - 32):]
    nll = model.sequence_nll(context, first_val - max(0, first_val - 32))
    return nll.mean().item() / (z_all.shape[-1] * z_all.shape[-2])


@torch.no_grad()
def rollout(model, z_context, frames, temperature, generator, vae=None):
    _, state = model(z_context[None, :-1])
    started = time.monotonic()
    feedback = None if vae is None else (lambda z: vae.encode(vae.decoder(z).clamp(0, 1))[0])
    shown, _, _ = model.rollout(z_context[-1:], state, frames, temperature, generator, feedback=feedback)
    return shown[0], frames / (time.monotonic() - started)


@torch.no_grad()
def one_step_psnr(model, vae, z_all, frames, first_val):
    """PSNR (dB) of the decoded teacher-forced T=0 prediction of each held-out frame, and of copying the frame
    before it: below copying, the model has not learnt the motion."""
    context = z_all[max(0, first_val - 32):]
    features, _ = model(context[None, :-1])
    offset = first_val - max(0, first_val - 32)
    features = features[0, offset - 1:]
    predicted = torch.cat([model.fill(features[i:i + 64], 0.0) for i in range(0, len(features), 64)])
    truth = torch.from_numpy(frames[first_val:]).float()
    def psnr(z):
        decoded = torch.from_numpy(decode(vae, z)).float()
        return round(float((10 * torch.log10(255 ** 2 / ((decoded - truth) ** 2).mean((1, 2, 3)))).mean()), 2)
    return {"one_step_psnr": psnr(predicted), "copy_psnr": psnr(z_all[first_val - 1:-1]),
            "recon_psnr": psnr(z_all[first_val:])}


def laplacian_var(frames):
    return float(np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames]))


def thumb(frames, side=16):
    return torch.from_numpy(np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
                                      for f in frames])).float().flatten(1)


def nn_distance(query, bank):
    return torch.cdist(query, bank).min(1)[0].mean().item()


def score_dream(dream, train, held_out):
    diffs = lambda f: np.abs(np.diff(f.astype(np.float32), axis=0)).mean()
    bank = thumb(train[::2])
    return {"sharpness": round(laplacian_var(dream) / laplacian_var(train[-300:]), 3),
            "frame_diff": round(float(diffs(dream) / diffs(train)), 3),
            "nn_ratio": round(nn_distance(thumb(dream), bank) / nn_distance(thumb(held_out), bank), 3),
            "still_share": round(float((np.abs(np.diff(dream.astype(np.float32), axis=0)).mean((1, 2, 3)) < 0.5)
                                       .mean()), 3)}


def strip(frames, path, count=12):
    idx = np.linspace(0, len(frames) - 1, count).astype(int)
    image = cv2.resize(np.concatenate(list(frames[idx]), 1), None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", default="enduro")
    parser.add_argument("--vae", default="fsq4")
    parser.add_argument("--vae-seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--temperatures", nargs="+", type=float, default=[1.0])
    parser.add_argument("--sampling-steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--dream-level", type=float, default=0.0)
    parser.add_argument("--reproject", action="store_true")
    parser.add_argument("--rounds", type=int, help="MaskGIT rounds when dreaming (default: the model's)")
    parser.add_argument("--random-order", action="store_true")
    parser.add_argument("--bonus-add", type=float, default=0.0)
    parser.add_argument("--load", action="store_true", help="dream with the model a run of this variant saved")
    parser.add_argument("--cell-temperatures", nargs="+", type=float, default=[0.0])
    parser.add_argument("--start", type=int, help="first dreamed frame's index (default: 10 into the held-out part)")
    args = parser.parse_args()
    global BATCH, DREAM_LEVEL, CELL_TEMPERATURE
    BATCH, DREAM_LEVEL = args.batch, args.dream_level
    kwargs, _, _ = V.VARIANTS[args.vae]
    vae = V.build(kwargs)
    vae.load_state_dict(load_file(V.OUT / f"{args.clip}-{args.vae}-s{args.vae_seed}.safetensors"))
    levels = vae.quantizer.levels.int().tolist()
    train, held_out, _ = load_clip(args.clip)
    z_all = encode_clip(vae, np.concatenate([train, held_out]))
    OUT.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"clip": args.clip, "copy_nll": round(copy_nll(z_all, len(train), levels), 3)}), flush=True)
    for variant in args.variants:
        started = time.monotonic()
        saved = OUT / f"{args.clip}-{args.vae}-{variant}-s{args.seed}.safetensors"
        if args.load:
            model = make_model(variant, levels, z_all.shape[-1], args.sampling_steps)
            model.load_state_dict(load_file(saved))
            model.trained_steps = -1
            model.eval()
        else:
            model = train_dreamer(variant, z_all[:len(train)], levels, args.steps, args.seed,
                                  sampling_steps=args.sampling_steps, seconds=args.seconds, bf16=args.bf16)
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, saved)
        train_s = time.monotonic() - started
        if args.rounds:
            model.config.sampling_steps = args.rounds
        global RANDOM_ORDER
        RANDOM_ORDER = args.random_order
        if args.bonus_add:
            model.copy_bonus.data += args.bonus_add
        nll = heldout_nll(model, z_all, len(train))
        print(json.dumps(one_step_psnr(model, vae, z_all, np.concatenate([train, held_out]), len(train))), flush=True)
        for temperature, CELL_TEMPERATURE in [(t, c) for t in args.temperatures for c in args.cell_temperatures]:
            generator = torch.Generator().manual_seed(args.seed)
            start = len(train) + 10 if args.start is None else args.start
            z, steps_per_s = rollout(model, z_all[start - 16:start + 1], args.frames, temperature, generator,
                                     vae if args.reproject else None)
            dream = decode(vae, z)
            name = f"{args.clip}-{args.vae}-{variant}-t{temperature}-r{int(args.reproject)}-m{model.config.sampling_steps}-b{args.bonus_add}-o{int(args.random_order)}-s{args.seed}"
            strip(dream, OUT / f"{name}.png")
            strip(dream[:16], OUT / f"{name}-first.png", count=16)
            result = {"clip": args.clip, "vae": args.vae, "variant": variant, "seed": args.seed, "steps": model.trained_steps,
                      "temperature": temperature, "reproject": args.reproject, "cell_temperature": CELL_TEMPERATURE, "start": start, "dream_level": args.dream_level, "train_s": round(train_s, 1),
                      "heldout_nll": round(nll, 3), "dream_steps_per_s": round(steps_per_s, 1),
                      **score_dream(dream, train, held_out)}
            print(json.dumps(result), flush=True)
            with open(OUT / "results.jsonl", "a") as log:
                log.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
