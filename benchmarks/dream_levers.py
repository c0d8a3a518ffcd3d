"""Dream-time levers on one trained run: temperature, decode->encode re-projection, time-correlated noise,
which latent is decoded.

    python benchmarks/dream_levers.py RUN_DIR --seeds 4 --frames 3008

Each lever dreams `--frames` frames from `--seeds` seeds and is scored by dreamvid's own `evaluation.score`
against the run's cache; prints mean +- sd over seeds. No retraining: the models are used as trained.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamvid import evaluation  # noqa: E402
from dreamvid.dreaming import Dreamer, load  # noqa: E402
from common import machine  # noqa: E402

# name: settings that differ from plain World Models sampling at temperature 1. "reproject": pass every latent
# through decode->encode; "rho": AR(1) correlation of the sampling noise over time; "decode": which latent
# becomes the frame while the sample is still what is fed back ("sample", the chosen mixture "component"'s mean
# with "spread" times its sampled deviation, or the "mixture" mean).
LEVERS = {
    "t=1.0": {}, "t=0.85": {"temperature": 0.85}, "t=0.7": {"temperature": 0.7},
    "reproject t=1.0": {"reproject": True}, "reproject t=0.7": {"reproject": True, "temperature": 0.7},
    "noise rho=0.5": {"rho": 0.5}, "noise rho=0.8": {"rho": 0.8}, "noise rho=0.9": {"rho": 0.9},
    "decode component": {"decode": "component"}, "decode mixture": {"decode": "mixture"},
    "decode component+0.3": {"decode": "component", "spread": 0.3},
    "decode component+0.5": {"decode": "component", "spread": 0.5},
    # On top of `default`'s own decoding (decode_spread 0.5), the control row being "decode component+0.5":
    "reproject+0.5": {"reproject": True, "decode": "component", "spread": 0.5},
    "noise rho=0.8+0.5": {"rho": 0.8, "decode": "component", "spread": 0.5},
    "t=1.15+0.5": {"temperature": 1.15, "decode": "component", "spread": 0.5},
    "t=1.3+0.5": {"temperature": 1.3, "decode": "component", "spread": 0.5},
}
KEYS = ("realism", "sharpness", "frame diff", "flow", "flicker", "coverage", "longest replay")


def _correlated(noise: torch.Tensor, rho: float) -> torch.Tensor:
    """AR(1) along time (dim 0) with the same unit variance: each step keeps rho of the last step's noise."""
    out = noise.clone()
    for step in range(1, len(out)):
        out[step] = rho * out[step - 1] + math.sqrt(1 - rho * rho) * noise[step]
    return out


@torch.no_grad()
def dream(dreamer: Dreamer, frames: int, seed: int, temperature: float = 1.0, reproject: bool = False,
          rho: float = 0.0, decode: str = "sample", spread: float = 0.0) -> np.ndarray:
    session = dreamer.session(temperature, seed)
    rnn, vae, z, state = dreamer.rnn, dreamer.vae, session.z, session.state
    uniform, normal = rnn.draw_noise((frames, *z.shape), session.generator, z.device)
    if rho > 0:
        # The component pick gets correlated too, through a correlated normal mapped to a uniform.
        normal = _correlated(normal, rho)
        uniform = 0.5 * (1 + torch.erf(_correlated(torch.randn(uniform.shape, generator=session.generator), rho)
                                       / math.sqrt(2)))
    shown = []
    for step in range(frames):
        params, state = rnn.step(z, state)
        z, center = rnn.sample_with_center(params, temperature, noise=(uniform[step], normal[step]))
        if reproject:
            z = vae.encode(vae.decode(z))[0]
        if decode == "component":
            shown.append(center + spread * (z - center))
        elif decode == "mixture":
            shown.append(rnn.mean(params))
        else:
            shown.append(z)
    shown = torch.cat(shown)
    return np.concatenate([dreamer.decode(shown[i:i + 256]) for i in range(0, frames, 256)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--frames", type=int, default=3008)
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    args = parser.parse_args()
    print(machine())
    dreamer = load(args.run, device="cpu")
    cache = dreamer.cache
    source = evaluation.prepare_source(cache.split("train"), cache.split("val"), dreamer.fps)
    for name in args.levers:
        rows = []
        for seed in range(args.seeds):
            frames = dream(dreamer, args.frames, seed, **LEVERS[name])
            metrics = evaluation.score(frames, source=source)["metrics"]
            motion = metrics["motion"]
            rows.append([metrics["realism"]["ratio"], metrics["sharpness"]["ratio"], motion["diff_ratio"],
                         motion["flow_ratio"], motion["flicker_ratio"], metrics["coverage"]["visited_share"],
                         metrics["copying"]["longest_run_frames"]])
        mean, sd = np.mean(rows, 0), np.std(rows, 0)
        print(f"{name:16s} " + "  ".join(f"{k} {m:.2f} +- {s:.2f}" for k, m, s in zip(KEYS, mean, sd)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
