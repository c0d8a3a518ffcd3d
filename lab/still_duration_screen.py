"""Screen: the motion model told how long the map has stood still (issue 19, River Raid's freezing)

The freeze lives in the motion model's loop (docs/results.md): free-running, it settles where its centre stays
~0.9 from the current g and the dream stands still for hundreds of frames. River Raid's source stands still too,
for at most ~20 frames at a time (its respawns), then moves again. The motion model is trained on 16-step windows
from a zero state, so it never sees a still stretch longer than a window, nor the end of one it saw begin. Here it
gets one more input: how many frames the map has stood still (changed in at most STILL_SHARE of its cells),
counted over the whole source before each window, not within it, and capped at CAP; a dream counts its own drawn
maps the same way. Dream model retrained on a run's maps for `--seconds` by the product's stage (the harness of
`lab/motion_own_maps_screen.py` at 6515c79), 2,000-frame dreams scored with `dreamvid eval`'s metrics.

    python lab/still_duration_screen.py /tmp/res10-own/riverraid--default--seed0/run ... [--control]
        [--cap-from-source] [--renderer-count]

Screened 2026-12-07 (150 s, 2,000-frame dreams, controls retrained the same day), control -> count (cap 32) ->
count up to the source's longest still stretch (24 on both River Raid runs) -> that, the renderer told too:
- River Raid seed 0: frame difference 0.048 -> 0.51 -> 0.43 -> 0.18, frozen share 0.96 -> 0.60 -> 0.47 -> 0.72,
  coverage 0.13 -> 0.38 -> 0.38 -> 0.38, realism 0.43 -> 1.24 -> 1.61 -> 1.29.
- River Raid seed 1: frame difference 0.035 -> 0.06 -> 0.06 -> 0.15, frozen share 0.98 -> 0.96 -> 0.94 -> 0.77,
  realism 0.23 -> 0.22 -> 0.65 -> 0.77.
- Enduro seed 0 (cap 32; it never stands still): realism 1.11 -> 1.17, frame difference 0.90 -> 0.83, flow
  0.78 -> 0.81.
Seed 1's dream at counts of 24 and more draws g's 2.7-3.0 from the current one (2.3 at lower counts): no
further than g's posterior spread (norm 3.9), and its drawn maps' g moves 0.2. Its dream does not stand still in
a crash scene, where the source pauses, but on a plain river (18 distinct codes a map against the source's 30;
0.5-3% of each row's cells change a step against 13%). River Raid moves more on one seed of two, not into its
band: not kept.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

import dreamvid
from dreamvid.evaluation.scoring import prepare_source, score
from dreamvid.models import map_dream
from dreamvid.models.map_dream import PAIRS_PER_WINDOW, MapDreamer
from dreamvid.models.vector import LayerNormLSTM
from dreamvid.training.rnn_stage import LatentWindows

KEYS = [("realism", "ratio"), ("sharpness", "ratio"), ("motion", "diff_ratio"), ("motion", "flow_ratio"),
        ("motion", "frozen_share"), ("coverage", "visited_share")]
STILL_SHARE = 0.02   # a map that changed in at most this share of its cells stood still (dreams flicker 1-2 cells)
CAP = {"frames": 32}  # stillness is counted up to this; with --cap-from-source, the source's longest still stretch


def changed_share(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Share of cells (..., C, H, W) whose code differs."""
    return (new != old).any(-3).flatten(-2).float().mean(-1)


def still_counts(maps: torch.Tensor) -> torch.Tensor:
    """Maps (T, C, H, W) -> (T,) frames each has stood still, counted from the first."""
    counts = torch.zeros(len(maps))
    share = changed_share(maps[1:], maps[:-1])
    for t in range(1, len(maps)):
        counts[t] = 0 if share[t - 1] > STILL_SHARE else counts[t - 1] + 1
    return counts


def with_count(maps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Maps (..., C, H, W) with their still counts (...) as one more channel."""
    return torch.cat([maps, counts.to(maps.dtype)[..., None, None, None].expand(*maps.shape[:-3], 1,
                                                                                  *maps.shape[-2:])], -3)


def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps, still counts) of maps that may carry their count as a last channel; without one, counted from the
    first map of each sequence (B, T, ...) or 0 for single maps (B, ...)."""
    channels = len(self.fsq.levels)
    if z.shape[-3] > channels:
        return z[..., :channels, :, :], z[..., channels, 0, 0].float()
    if z.dim() == 5:
        return z, torch.stack([still_counts(seq.cpu()) for seq in z]).to(z.device)
    return z, z.new_zeros(len(z)).float()


def motion_inputs(g: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return torch.cat([g, (counts.clamp(max=CAP['frames']) / CAP['frames'])[..., None].to(g.dtype)], -1)


RENDERER = {"count": False}   # --renderer-count: the renderer is told the count too


def render_g(g: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """What the renderer is given besides the map before: g, and with --renderer-count that map's count."""
    return motion_inputs(g, counts) if RENDERER["count"] else g


ORIGINAL = {name: getattr(MapDreamer, name)
            for name in ("__init__", "forward", "step", "nll", "mean", "dream_step", "loss")}
ORIGINAL_WINDOWS_INIT = LatentWindows.__init__


def _init(self, config, latent_shape, levels):
    ORIGINAL["__init__"](self, config, latent_shape, levels)
    setattr(self.motion, config.cell, LayerNormLSTM(config.global_size + 1, config.hidden, config.layers))
    if RENDERER["count"]:
        self.renderer = map_dream.MapRenderer(self.fsq, config.global_size + 1, config.width)


def _forward(self, z, state=None, batch=None):
    maps, counts = split(self, z)
    params, state = self.motion(motion_inputs(self.layout(maps), counts), state, batch)
    return (params, with_count(maps, counts)), state


def _step(self, z, state=None):
    maps, counts = split(self, z)
    params, state = self.motion.step(motion_inputs(self.layout(maps), counts), state)
    return (params, with_count(maps, counts)), state


def _nll(self, params, target):
    motion, current = params
    current, counts = split(self, current)
    target = split(self, target)[0]
    g = self.layout(target)
    lead = target.shape[:-3]
    flat = lambda x: x.reshape(-1, *x.shape[len(lead):])   # noqa: E731
    cells = self.renderer.nll(self.renderer.features(flat(current), flat(render_g(g, counts))), flat(target))
    return self.motion.nll(motion, g) + cells.view(lead)


def _mean(self, params):
    motion, current = params
    current, counts = split(self, current)
    features = self.renderer.features(current, render_g(self.motion.mean(motion), counts))
    return self.renderer.fill(features, self.config.sampling_steps, 1.0)


def _dream_step(self, z, state, temperature, noise, decode_spread=1.0, feedback=None):
    uniform, normal, cells = noise
    maps, counts = split(self, z)
    (params, _), state = self.step(z, state)
    g, center = self.motion.sample_with_center(params, temperature, noise=(uniform, normal))
    features = self.renderer.features(maps, render_g(center + decode_spread * (g - center), counts))
    new = self.renderer.fill(features, self.config.sampling_steps, temperature, cells)
    counts = torch.where(changed_share(new, maps) > STILL_SHARE, torch.zeros_like(counts), counts + 1)
    return new, with_count(new, counts), state


def _loss(self, inputs, targets, batch=None):
    window, counts = split(self, torch.cat([inputs[:, :1], targets], 1))
    windows, steps = window.shape[:2]
    batch = batch or map_dream.StepBatch()
    summary_loss, g = self.summary.loss(window.flatten(0, 1), batch)
    g = g.view(windows, steps, -1)
    motion_loss = self.motion.loss(motion_inputs(g[:, :-1], counts[:, :-1]), g[:, 1:], batch)
    t = 1 + batch.randint(steps - 2, (windows, PAIRS_PER_WINDOW), window.device)
    rows = torch.arange(windows, device=window.device)[:, None]
    previous = window[rows, t].flatten(0, 1)
    previous = self._some_drawn(previous, window[rows, t - 1].flatten(0, 1),
                                render_g(g[rows, t], counts[rows, t - 1]).flatten(0, 1), batch)
    features = self.renderer.features(previous, render_g(g[rows, t + 1], counts[rows, t]).flatten(0, 1))
    render_loss = self.renderer.loss(features, window[rows, t + 1].flatten(0, 1), batch)
    return summary_loss / math.prod(window.shape[-2:]) + motion_loss / g.shape[-1] + render_loss


def _windows_init(self, latents, seq_len, device):
    ORIGINAL_WINDOWS_INIT(self, latents, seq_len, device)
    counts = torch.zeros(len(self.mu))
    for start, stop in latents["sequences"].tolist():
        counts[start:stop] = still_counts(self.mu[start:stop].cpu())
    self.mu = with_count(self.mu, counts.to(self.mu.device))
    if CAP.get("from_source"):
        CAP["frames"] = max(1, max(int(counts[a:b].max()) for a, b in self.train_ranges))
        print(json.dumps({"cap": CAP["frames"]}), flush=True)


@contextlib.contextmanager
def still_duration():
    patches = {"__init__": _init, "forward": _forward, "step": _step, "nll": _nll, "mean": _mean,
               "dream_step": _dream_step, "loss": _loss}
    for name, patch in patches.items():
        setattr(MapDreamer, name, patch)
    LatentWindows.__init__ = _windows_init
    try:
        yield
    finally:
        for name, original in ORIGINAL.items():
            setattr(MapDreamer, name, original)
        LatentWindows.__init__ = ORIGINAL_WINDOWS_INIT


def retrain(run: Path, again: Path, seconds: float) -> None:
    """A copy of the finished `run` set back to the start of its dream-model stage with `seconds` left."""
    shutil.copytree(run, again)
    for name in ("rnn.safetensors", "state/rnn_optimizer.safetensors", "state/rnn_best.safetensors"):
        (again / name).unlink(missing_ok=True)
    log = [line for line in (again / "log.jsonl").read_text().splitlines() if json.loads(line)["stage"] == "vae"]
    (again / "log.jsonl").write_text("".join(line + "\n" for line in log))
    budget = json.loads((again / "config.json").read_text())["train"]["minutes"] * 60
    (again / "state" / "train_state.json").write_text(json.dumps({"stage": "rnn", "elapsed": budget - seconds}))
    dreamvid.train(out=again, resume=True, device="cpu", progress=False)


def scored(again: Path, frames: int, seed: int, source) -> dict:
    latents = dreamvid.load(again, device="cpu").dream(frames=frames, seed=seed)
    dream = np.stack(list(latents))
    metrics = score(dream, source=source)["metrics"]
    return {f"{group[:4]}.{key[:6]}": round(float(metrics[group][key]), 3) for group, key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--control", action="store_true", help="also retrain today's dream model")
    parser.add_argument("--cap-from-source", action="store_true", help="count stillness up to the source's longest")
    parser.add_argument("--renderer-count", action="store_true", help="tell the renderer the count too")
    parser.add_argument("--keep", type=Path, help="keep the retrained runs under this folder")
    args = parser.parse_args()
    CAP["from_source"] = args.cap_from_source
    RENDERER["count"] = args.renderer_count
    for run in args.runs:
        dreamer = dreamvid.load(run, device="cpu")
        source = prepare_source(dreamer.cache.split("train"), dreamer.cache.split("val"), dreamer.fps)
        name, seed = run.parent.name, dreamer.config.train.seed
        with tempfile.TemporaryDirectory(prefix="dreamvid-still-") as work:
            root = args.keep or Path(work)
            if args.control:
                retrain(run, root / f"{name}-control", args.seconds)
                print(json.dumps({"run": name, "variant": "control",
                                  **scored(root / f"{name}-control", args.frames, seed, source)}), flush=True)
            with still_duration():
                retrain(run, root / f"{name}-still", args.seconds)
                variant = "still duration" + (" (renderer too)" if args.renderer_count else "")
                print(json.dumps({"run": name, "variant": variant,
                                  **scored(root / f"{name}-still", args.frames, seed, source)}), flush=True)


if __name__ == "__main__":
    main()
