"""Lab screen (Spatial issue): does a global latent stop a map dream from eroding thin structure?

Map dream models (spatial_dream.py) erase Enduro's road edges within ~10 frames whatever the sampler: creating a
line cell is rarer and harder to predict than losing one. Here the next map is drawn given the previous map *and*
the next frame's World Models latent g (32 numbers that hold the road's shape, blurred), by the same MaskGIT head.
Oracle test: g is the true latent of each held-out frame; then g from an MDN-LSTM dream.

    python lab/anchored.py --clip enduro --vae local3-l555 --vae-seed 1 --seconds 120
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

import spatial_dream as D
import spatial_vae as V
from clips import load_clip
from dreamvid.config import PRESETS, RNNConfig
from dreamvid.models import build_rnn, build_vae

OUT = Path("/tmp/dreamvid-lab/anchored")
G = 32
PAIRS = 4
RENDER_WIDTH = 48


class AnchoredRenderer(D.GlobalHeadMapDreamer):
    """p(m_t | m_{t-1}, g_t): the previous map at the cell grid, g_t as a 4x4 map upsampled and as a global
    vector, a coarse path for reach; the MaskGIT head of GlobalHeadMapDreamer."""

    def __init__(self, levels, side, width=None):
        width = width or RENDER_WIDTH
        config = RNNConfig(kind="map", width=width, hidden=width, sampling_steps=4)
        super().__init__(config, (len(levels), side, side), tuple(levels), 2.0)
        channels = len(levels)
        self.g_map = nn.Linear(G, 16 * 4 * 4)
        self.g_vec = nn.Linear(G, width)
        self.embed = nn.Conv2d(channels + 16, width, 3, 1, 1)
        self.blocks = nn.Sequential(V.ResBlock(width), V.ResBlock(width))
        self.down = nn.Conv2d(width, width, 4, 2, 1)
        self.coarse = nn.Sequential(V.ResBlock(width), V.ResBlock(width))
        self.up = nn.ConvTranspose2d(width, width, 4, 2, 1)
        del self.gru, self.context

    def features(self, previous, g):
        side = previous.shape[-1]
        gmap = F.interpolate(self.g_map(g).view(-1, 16, 4, 4), size=(side, side), mode="bilinear")
        x = F.silu(self.embed(torch.cat([previous, gmap], 1))) + self.g_vec(g)[:, :, None, None]
        x = self.blocks(x)
        coarse = self.coarse(F.silu(self.down(x)))
        coarse = coarse + coarse.mean((2, 3), keepdim=True)
        anchor = self.fsq.values(self.fsq.indices(previous))
        return torch.cat([x, F.silu(self.up(coarse)), anchor], 1)

    def pair_loss(self, previous, g, target, generator):
        return self._masked_loss(self.features(previous, g), target, generator)


def train_world_models_vae(frames, seconds, seed):
    torch.manual_seed(seed)
    config = PRESETS["worldmodels"]()
    vae = build_vae(config.vae)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(frames)
    started, steps = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        rows = torch.randint(len(data), (64,), generator=generator)
        images = data[rows].permute(0, 3, 1, 2).float().div(255)
        with torch.autocast("cpu", torch.bfloat16):
            loss, _ = vae.loss(images, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    print(json.dumps({"wm_vae_steps": steps}), flush=True)
    return vae.eval(), config


@torch.no_grad()
def encode_g(vae, frames):
    return torch.cat([vae.encode(torch.from_numpy(frames[i:i + 256]).permute(0, 3, 1, 2).float().div(255))[0]
                      for i in range(0, len(frames), 256)])


def train_renderer(maps, g, levels, seconds, seed, batch=32):
    torch.manual_seed(seed)
    model = AnchoredRenderer(levels, maps.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    started, steps = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        rows = torch.randint(1, len(maps), (batch,), generator=generator)
        with torch.autocast("cpu", torch.bfloat16):
            loss = model.pair_loss(maps[rows - 1], g[rows], maps[rows], generator)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        steps += 1
    print(json.dumps({"renderer_steps": steps, "loss": round(loss.item(), 3)}), flush=True)
    return model.eval()


def train_mdn(g_train, seconds, seed):
    torch.manual_seed(seed)
    config = PRESETS["default"]().rnn
    rnn = build_rnn(config, G)
    optimizer = torch.optim.Adam(rnn.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    started, steps = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        starts = torch.randint(len(g_train) - 33, (32,), generator=generator)
        window = g_train[starts[:, None] + torch.arange(33)]
        loss = rnn.loss(window[:, :-1], window[:, 1:], generator)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rnn.parameters(), 1.0)
        optimizer.step()
        steps += 1
    print(json.dumps({"mdn_steps": steps, "loss": round(loss.item(), 3)}), flush=True)
    return rnn.eval()


@torch.no_grad()
def render(model, start_map, g_sequence, temperature, generator):
    maps, m = [], start_map
    for g in g_sequence:
        m = model.fill(model.features(m, g[None]), temperature, generator)
        maps.append(m)
    return torch.cat(maps)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", default="enduro")
    parser.add_argument("--vae", default="local3-l555")
    parser.add_argument("--vae-seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--wm-seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--start", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperatures", nargs="+", type=float, default=[1.0])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    train, held_out, _ = load_clip(args.clip)
    frames = np.concatenate([train, held_out])
    spatial = V.build(V.VARIANTS[args.vae][0])
    spatial.load_state_dict(load_file(V.OUT / f"{args.clip}-{args.vae}-s{args.vae_seed}.safetensors"))
    levels = spatial.quantizer.levels.int().tolist()
    maps = D.encode_clip(spatial, frames)
    wm_path = OUT / f"{args.clip}-wm-s{args.seed}.safetensors"
    if wm_path.is_file():
        wm = build_vae(PRESETS["worldmodels"]().vae)
        wm.load_state_dict(load_file(wm_path))
        wm.eval()
    else:
        wm, _ = train_world_models_vae(train, args.wm_seconds, args.seed)
        save_file({k: v.contiguous() for k, v in wm.state_dict().items()}, wm_path)
    g = encode_g(wm, frames)
    renderer = train_renderer(maps[:len(train)], g[:len(train)], levels, args.seconds, args.seed)
    mdn = train_mdn(g[:len(train)], 30, args.seed)
    for temperature in args.temperatures:
        generator = torch.Generator().manual_seed(args.seed)
        s = args.start
        oracle = render(renderer, maps[s - 1:s], g[s:s + args.frames], temperature, generator)
        _, state = mdn(g[None, s - 17:s - 1])
        dreamt, _, _ = mdn.rollout(g[s - 1:s], state, args.frames, 1.0, generator, decode_spread=0.5)
        dream = render(renderer, maps[s - 1:s], dreamt[0], temperature, generator)
        for name, z in (("oracle", oracle), ("mdn", dream)):
            decoded = D.decode(spatial, z)
            tag = f"{args.clip}-{name}-t{temperature}-s{args.seed}"
            D.strip(decoded, OUT / f"{tag}.png")
            D.strip(decoded[:16], OUT / f"{tag}-first.png", count=16)
            print(json.dumps({"clip": args.clip, "g": name, "temperature": temperature,
                              **D.score_dream(decoded, train, held_out)}), flush=True)


if __name__ == "__main__" and __import__("sys").argv[1:2] != ["joint"]:
    main()


# --- joint version: g from the map itself, everything trained in one stage -----------------------------------

class MapGlobal(nn.Module):
    """A VAE over the map: the map's codes -> g (G numbers) -> each cell's code distribution. Its reconstruction
    term forces g to describe the whole frame's layout (a scene, where the road runs)."""

    def __init__(self, levels, side, width=64, free_bits=0.5):
        super().__init__()
        channels, self.codes, self.free_bits = len(levels), math.prod(levels), free_bits
        flat = 2 * width * (side // 4) ** 2
        self.shape = (2 * width, side // 4, side // 4)
        self.encoder = nn.Sequential(nn.Conv2d(channels, width, 4, 2, 1), nn.SiLU(),
                                     nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(), nn.Flatten())
        self.to_mu, self.to_logvar = nn.Linear(flat, G), nn.Linear(flat, G)
        self.from_g = nn.Linear(G, flat)
        self.decoder = nn.Sequential(nn.SiLU(), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.SiLU(),
                                     nn.ConvTranspose2d(width, width, 4, 2, 1), nn.SiLU(),
                                     nn.Conv2d(width, self.codes, 1))

    def encode(self, maps):
        hidden = self.encoder(maps)
        return self.to_mu(hidden).float(), self.to_logvar(hidden).float().clamp(-10, 5)

    def loss(self, maps, joint_index, generator):
        mu, logvar = self.encode(maps)
        g = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
        logits = self.decoder(self.from_g(g).view(-1, *self.shape)).float()
        ce = F.cross_entropy(logits, joint_index, reduction="none").flatten(1).sum(1).mean()
        kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1).mean()
        return ce + kl.clamp_min(self.free_bits * G), g.detach()


class JointAnchored(nn.Module):
    def __init__(self, levels, side):
        super().__init__()
        self.glob = MapGlobal(levels, side)
        self.mdn = build_rnn(PRESETS["default"]().rnn, G)
        self.renderer = AnchoredRenderer(levels, side)

    def loss(self, window, generator):
        batch, steps = window.shape[:2]
        maps = window.flatten(0, 1)
        index = self.renderer.joint(self.renderer.fsq.indices(maps))
        global_loss, g = self.glob.loss(maps, index, generator)
        g = g.view(batch, steps, G)
        mdn_loss = self.mdn.loss(g[:, :-1], g[:, 1:], generator)
        # the renderer is Markov in maps: a few random pairs of each window teach it as much as all of them
        t = torch.randint(steps - 1, (batch, PAIRS), generator=generator)
        rows = torch.arange(batch)[:, None]
        render_loss = self.renderer.pair_loss(window[rows, t].flatten(0, 1), g[rows, t + 1].flatten(0, 1),
                                              window[rows, t + 1].flatten(0, 1), generator)
        cells = maps.shape[-1] * maps.shape[-2]
        return global_loss / cells + mdn_loss / G + render_loss, (global_loss.item() / cells, mdn_loss.item(),
                                                                  render_loss.item())

    @torch.no_grad()
    def dream(self, context, frames, temperature, generator, reencode=False):
        g_context = self.glob.encode(context)[0]
        _, state = self.mdn(g_context[None, :-1])
        g, m, maps = g_context[-1:], context[-1:], []
        for _ in range(frames):
            shown, g, state = self.mdn.rollout(g, state, 1, 1.0, generator, decode_spread=0.5)
            m = self.renderer.fill(self.renderer.features(m, shown[:, 0]), temperature, generator)
            if reencode:
                g = self.glob.encode(m)[0]
            maps.append(m)
        return torch.cat(maps)


def train_joint(z_train, levels, seconds, seed, batch=16, window=16):
    torch.manual_seed(seed)
    model = JointAnchored(levels, z_train.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    started, steps = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        starts = torch.randint(len(z_train) - window - 1, (batch,), generator=generator)
        win = z_train[starts[:, None] + torch.arange(window + 1)]
        with torch.autocast("cpu", torch.bfloat16):
            loss, parts = model.loss(win, generator)
        optimizer.zero_grad()
        loss.backward()
        for part in (model.glob, model.mdn, model.renderer):
            torch.nn.utils.clip_grad_norm_(part.parameters(), 1.0)
        optimizer.step()
        steps += 1
        if steps % 200 == 0:
            print(f"  step {steps} parts {[round(p, 3) for p in parts]}", flush=True)
    print(json.dumps({"joint_steps": steps}), flush=True)
    return model.eval()


def main_joint():
    parser = argparse.ArgumentParser()
    parser.add_argument("joint")
    parser.add_argument("--clip", default="enduro")
    parser.add_argument("--vae", default="local3-l555")
    parser.add_argument("--vae-seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--start", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperatures", nargs="+", type=float, default=[1.0])
    parser.add_argument("--reencode", action="store_true")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--width", type=int, default=48)
    args = parser.parse_args()
    global PAIRS, RENDER_WIDTH
    PAIRS, RENDER_WIDTH = args.pairs, args.width
    OUT.mkdir(parents=True, exist_ok=True)
    train, held_out, _ = load_clip(args.clip)
    frames = np.concatenate([train, held_out])
    spatial = V.build(V.VARIANTS[args.vae][0])
    spatial.load_state_dict(load_file(V.OUT / f"{args.clip}-{args.vae}-s{args.vae_seed}.safetensors"))
    levels = spatial.quantizer.levels.int().tolist()
    maps = D.encode_clip(spatial, frames)
    model = train_joint(maps[:len(train)], levels, args.seconds, args.seed)
    for temperature in args.temperatures:
        generator = torch.Generator().manual_seed(args.seed)
        s = args.start
        dream = model.dream(maps[s - 16:s + 1], args.frames, temperature, generator, args.reencode)
        decoded = D.decode(spatial, dream)
        tag = f"{args.clip}-joint-t{temperature}-e{int(args.reencode)}-p{PAIRS}-w{RENDER_WIDTH}-s{args.seed}"
        D.strip(decoded, OUT / f"{tag}.png")
        D.strip(decoded[:16], OUT / f"{tag}-first.png", count=16)
        print(json.dumps({"clip": args.clip, "joint": True, "pairs": PAIRS, "width": RENDER_WIDTH, "temperature": temperature, "reencode": args.reencode,
                          **D.score_dream(decoded, train, held_out)}), flush=True)


if __name__ == "__main__" and len(__import__("sys").argv) > 1 and __import__("sys").argv[1] == "joint":
    main_joint()
