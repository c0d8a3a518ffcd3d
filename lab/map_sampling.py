"""Lab screen (Spatial issue): how should a trained map dream model be sampled? MaskGIT rounds x temperature.

Trains one dream model on frozen latents of an auto-encoder saved by spatial_vae.py (or loads it), then dreams
from a training frame with each (rounds, temperature) and scores the decoded dream like spatial_dream.py.

    python lab/map_sampling.py --clip enduro --vae shuf4-edge --steps 700 --rounds 1 2 4 --temperatures 0.7 1.0
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import spatial_dream as D
import spatial_vae as V
from clips import load_clip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", default="enduro")
    parser.add_argument("--vae", default="shuf4-edge")
    parser.add_argument("--variant", default="small-base")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--rounds", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--temperatures", nargs="+", type=float, default=[0.7, 1.0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--start", type=int, default=1000, help="dream from this training frame")
    args = parser.parse_args()
    vae = V.build(V.VARIANTS[args.vae][0])
    vae.load_state_dict(load_file(V.OUT / f"{args.clip}-{args.vae}-s0.safetensors"))
    levels = vae.quantizer.levels.int().tolist()
    train, held_out, _ = load_clip(args.clip)
    z = D.encode_clip(vae, train)
    saved = D.OUT / f"{args.clip}-{args.vae}-{args.variant}-{args.steps}.safetensors"
    D.BATCH = 8
    if saved.is_file():
        model = D.make_model(args.variant, levels, z.shape[-1], 4)
        model.load_state_dict(load_file(saved))
        model.eval()
    else:
        model = D.train_dreamer(args.variant, z, levels, args.steps, 0)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, saved)
    for rounds in args.rounds:
        model.config = replace(model.config, sampling_steps=rounds)
        for temperature in args.temperatures:
            generator = torch.Generator().manual_seed(0)
            dream, steps_per_s = D.rollout(model, z[args.start - 16:args.start + 1], args.frames, temperature,
                                           generator)
            frames = D.decode(vae, dream)
            name = f"{args.clip}-{args.vae}-{args.variant}-{args.steps}-k{rounds}-t{temperature}"
            D.strip(frames, D.OUT / f"{name}.png")
            print(json.dumps({"rounds": rounds, "temperature": temperature, "steps_per_s": round(steps_per_s, 1),
                              **D.score_dream(frames, train, held_out)}), flush=True)


if __name__ == "__main__":
    main()
