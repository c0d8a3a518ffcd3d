"""VAE levers at a fraction of a cell's cost: train only the VAE for a few minutes, score its reconstructions.

    python benchmarks/vae_levers.py --clips enduro carphone --variants default default+beta0.25 --seconds 180
    python benchmarks/vae_levers.py --clips enduro --variants default default+ae --picture vae.png  # enduro-vae.png

Every dreamed frame is drawn by the VAE's decoder, so its reconstructions of held-out frames bound what a dream
can reach: sharpness and patch realism (as `dreamvid eval` scores them), PSNR and SSIM. Two more figures say what
the RNN will have to learn from: the latents' KL (nats per frame) and the "noise to motion" ratio, the mean
posterior standard deviation over the mean frame-to-frame change of the latent means, on the dimensions the
VAE uses (KL above 0.05 nats). World Models' RNN learns from posterior samples, so where this ratio is large it
learns mostly noise. Variants are presets.py's; one already trained and scored in `--out` is not trained again.
`--picture` draws, per clip, eight training frames spread over the clip and each variant's reconstruction of
them (from the latent means), one row per variant.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import presets  # noqa: E402
from common import machine  # noqa: E402

COLUMNS = ("sharpness_ratio", "realism_ratio", "psnr", "ssim", "kl_nats", "active_dims", "noise_to_motion",
           "vae_epochs", "vae_val_loss")
ACTIVE_KL = 0.05  # nats: a latent dimension carrying less than this is treated as unused (collapsed to the prior)


def run_folder(out: Path, clip: str, variant: str, seconds: float) -> Path:
    return out / f"{clip}--{variant}--{seconds:g}s"


def train_vae(clip: str, variant: str, seconds: float, out: Path, seed: int) -> Path:
    """The variant's VAE trained for `seconds` on `clip`; the RNN stage gets a token second, then stops."""
    import dreamvid
    from dreamvid.footage import footage_path
    run = run_folder(out, clip, variant, seconds)
    config = presets.VARIANTS[variant]()
    share = seconds / (seconds + 1)
    config.train = replace(config.train, vae_share=share)
    dreamvid.train(footage_path(clip, out / "footage", n_frames=3000), run, preset=config,
                   minutes=(seconds + 1) / 60, seed=seed, force=True, progress=False, device="cpu")
    return run


def score_vae(run: Path) -> dict:
    import torch

    from dreamvid import metrics as M
    from dreamvid.checkpoint import load_tensors
    from dreamvid.dreaming import load
    from dreamvid.evaluation import prepare_source, reconstruction
    from dreamvid.models import gaussian_kl
    dreamer = load(run, device="cpu")
    heldout = dreamer.cache.split("val")
    result, reconstructed = reconstruction(dreamer, heldout)
    source = prepare_source(dreamer.cache.split("train"), heldout, dreamer.fps)
    _, patch = M.patch_distances(reconstructed, source.bank)
    result["realism_ratio"] = M.ratio(float(patch.mean()), source.heldout_patch)
    latents = load_tensors(run / "latents.safetensors")
    mu, logvar = latents["mu"], latents["logvar"]
    kl = gaussian_kl(mu, logvar)
    active = kl.mean(0) > ACTIVE_KL
    step = torch.cat([(mu[a + 1:b] - mu[a:b - 1]).abs() for a, b in latents["sequences"].tolist()])
    result["kl_nats"] = float(kl.sum(1).mean())
    result["active_dims"] = int(active.sum())
    # Means, not medians: in Atari footage most consecutive frames are identical, so the median step is 0.
    result["noise_to_motion"] = float((0.5 * logvar[:, active]).exp().mean() / step[:, active].mean()) \
        if active.any() else None
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vae_epochs = [entry for entry in log if entry.get("stage") == "vae"]
    result["vae_epochs"] = len(vae_epochs)
    result["vae_val_loss"] = vae_epochs[-1]["val_loss"] if vae_epochs else None
    return {key: round(result[key], 4) if isinstance(result.get(key), float) else result.get(key)
            for key in COLUMNS}


def reconstructions(run: Path, count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """`count` training frames spread evenly over the clip, and the run's reconstructions of them from their means."""
    from dreamvid import metrics as M
    from dreamvid.dreaming import load
    dreamer = load(run, device="cpu")
    train = M.concat(dreamer.cache.split("train"))
    frames = train[M.evenly(len(train), count)]
    return frames, dreamer.decode(dreamer.encode(frames)[0])


def save_picture(path: Path, runs: list[Path]) -> None:
    from dreamvid.plots import save_image_grid
    source, first = reconstructions(runs[0])
    save_image_grid(path, [source, first] + [reconstructions(run)[1] for run in runs[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", default=["enduro"])
    parser.add_argument("--variants", nargs="+", choices=list(presets.VARIANTS), default=["default"])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path, default=Path("vae-levers"))
    parser.add_argument("--picture", type=Path, help="PNG of source frames and each variant's reconstructions "
                                                     "(one per clip: CLIP- is put before the file name)")
    args = parser.parse_args()
    print(machine(), flush=True)
    print("| clip | variant | seconds | " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * (len(COLUMNS) + 3))
    for clip in args.clips:
        runs = []
        for variant in args.variants:
            started = time.monotonic()
            run = run_folder(args.out, clip, variant, args.seconds)
            if (run / "vae_score.json").is_file():
                row = json.loads((run / "vae_score.json").read_text())
            else:
                train_vae(clip, variant, args.seconds, args.out, args.seed)
                row = score_vae(run)
                (run / "vae_score.json").write_text(json.dumps(row, indent=2))
            runs.append(run)
            print(f"| {clip} | {variant} | {args.seconds:g} | " + " | ".join(str(row.get(c)) for c in COLUMNS) +
                  f" |  ({time.monotonic() - started:.0f} s)", flush=True)
        if args.picture:
            save_picture(args.picture.with_name(f"{clip}-{args.picture.name}"), runs)


if __name__ == "__main__":
    main()
