"""Lab screen (issue 19): the patch memory extended to cells whose neighbourhood it never saw, by nearest neighbour.

On live action the exact memory redraws 4-11% of cells; the decoder draws the rest with its 4-pixel grain, and
patch realism counts it (held-out recon realism 1.21 carphone, 1.27 `bikes`; blurrier `worldmodels` 0.74, 1.15).
Single-video generators that draw only the source's own patches (GPNN, Granot et al. 2022; VGPNN, Haim et al.
2022) reach its look by nearest neighbours. Here a cell the memory missed takes the training patch whose context
is nearest to its own: by its 3x3 neighbourhood of code values (27 numbers), or by the decoder's 8x8 pixels
around it (the cell and a 2-pixel ring). Trains the VAE alone and scores held-out reconstructions as `dreamvid
eval` does.

    python lab/nearest_patch_screen.py --clips bikes carphone enduro --seeds 0 --seconds 150

Results (2026-12-07, dev CPU, held-out recon realism / sharpness; seed 0 ran codes and pixels, seed 1 pixels,
samecode and joint):
    seed 0  bikes     decoder 1.33 / 0.77, memory 1.21 / 0.80, memory+codes 0.97 / 0.97 (wrong-coloured patches),
                      memory+pixels 0.81 / 0.71, pixels-only 0.77 / 0.69
            carphone  decoder 1.21 / 0.98, memory 1.24 / 1.06, memory+codes 1.01 / 1.16, memory+pixels 0.88 / 1.10,
                      pixels-only 0.60 / 1.03
            enduro    decoder 1.88 / 0.79, memory 1.06 / 0.74, memory+codes 0.91 / 0.92, memory+pixels 0.79 / 0.80,
                      pixels-only 0.93 / 0.81
    seed 1  bikes     memory 1.25 / 0.81, memory+pixels 0.83 / 0.73, memory+samecode 1.01 / 0.80,
                      memory+joint 0.82 / 0.79, joint-only 0.75 / 0.78
            carphone  memory 1.17 / 1.03, memory+pixels 0.78 / 1.07, memory+samecode 1.07 / 1.12,
                      memory+joint 0.79 / 1.10, joint-only 0.66 / 1.06
            enduro    memory 1.15 / 0.81, memory+pixels 0.81 / 0.81, memory+samecode 1.11 / 0.96,
                      memory+joint 0.83 / 0.87, joint-only 0.83 / 0.85
Kept: memory+joint (the exact memory first, then the nearest by pixels and codes): better than the memory alone
on all six, sharper than pixels alone. Codes alone draw wrong colours; one's own code's cells only lose realism.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dreamvid.cache import build_cache
from dreamvid.config import PRESETS
from dreamvid.device import autocast, fast_bf16, place
from dreamvid.evaluation import metrics as M
from dreamvid.evaluation.scoring import realism_ratio
from dreamvid.footage import footage_path
from dreamvid.models import build_vae, frames_to_tensor, tensor_to_frames
from dreamvid.models.patch_memory import PatchMemory, from_cells, to_cells
from dreamvid.models.spatial import CELL

cv2.setNumThreads(1)
WORK = Path("/tmp/dreamvid-lab/nearest")
BANK = 1 << 16
RING = 2
KINDS = ("pixels", "samecode", "joint")


def frames_of(clip: str) -> tuple[np.ndarray, np.ndarray, float]:
    cache = build_cache([footage_path(clip, WORK / "footage")], WORK / "cache", size=64, fps=None, crop="center",
                        progress=False)
    return np.concatenate(cache.split("train")), np.concatenate(cache.split("val")), cache.fps


def train(config, frames: np.ndarray, seconds: float, seed: int):
    torch.manual_seed(seed)
    device = torch.device("cpu")
    vae = place(build_vae(config), device).train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr)
    rng, bf16, steps, started = np.random.default_rng(seed), fast_bf16(device), 0, time.monotonic()
    while time.monotonic() - started < seconds:
        batch = frames_to_tensor(frames[np.sort(rng.choice(len(frames), 16, replace=False))])
        with autocast(device, bf16):
            loss, _ = vae.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), config.grad_clip)
        optimizer.step()
        steps += 1
    return vae.eval(), steps


def code_context(vae, codes: np.ndarray) -> torch.Tensor:
    """Codes (N, H, W) -> (N*H*W, 27): each cell's 3x3 neighbourhood of code values (edges replicated)."""
    values = vae.quantise.code_values(torch.from_numpy(codes))
    padded = F.pad(values, (1, 1, 1, 1), mode="replicate")
    return F.unfold(padded, 3).transpose(1, 2).reshape(-1, values.shape[1] * 9)


def pixel_context(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> (N*H*W, 3*(4+2*RING)^2): each cell's pixels and a ring around it, in [0, 1]."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    padded = F.pad(x, (RING,) * 4, mode="replicate")
    return F.unfold(padded, CELL + 2 * RING, stride=CELL).transpose(1, 2).reshape(-1, 3 * (CELL + 2 * RING) ** 2)


def nearest_rows(query: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    bank_sq = (bank ** 2).sum(1)
    out = []
    for start in range(0, len(query), chunk):
        q = query[start:start + chunk]
        out.append((bank_sq[None] - 2 * q @ bank.T).argmin(1))
    return torch.cat(out)


JOINT_SCALE = 0.5


def context(vae, kind: str, codes: np.ndarray, frames: np.ndarray) -> torch.Tensor:
    if kind == "codes":
        return code_context(vae, codes)
    if kind == "joint":
        return torch.cat([pixel_context(frames), JOINT_SCALE * code_context(vae, codes)], 1)
    return pixel_context(frames)


class NearestFallback:
    """kind: codes / pixels / joint (both) / samecode (pixels, among training cells of the cell's own code)."""

    def __init__(self, vae, train_frames: np.ndarray, train_codes: np.ndarray, kind: str, seed: int):
        self.vae, self.kind = vae, kind
        cells = to_cells(train_frames)
        keys = context(vae, kind, train_codes, train_frames)
        rows = np.random.default_rng(seed).permutation(len(cells))[:BANK]
        self.keys, self.patches = keys[torch.from_numpy(rows)].contiguous(), cells[rows]
        self.codes = train_codes.ravel()[rows]

    def apply(self, codes: np.ndarray, decoded: np.ndarray, done: np.ndarray) -> np.ndarray:
        cells = to_cells(decoded).copy()
        query = context(self.vae, self.kind, codes, decoded)
        miss = np.flatnonzero(~done)
        if not len(miss):
            return decoded
        if self.kind != "samecode":
            cells[miss] = self.patches[nearest_rows(query[torch.from_numpy(miss)], self.keys).numpy()]
            return from_cells(cells, len(decoded))
        flat = codes.ravel()
        for code in np.unique(flat[miss]):
            at = miss[flat[miss] == code]
            bank = np.flatnonzero(self.codes == code)
            if not len(bank):
                bank = np.arange(len(self.codes))
            best = nearest_rows(query[torch.from_numpy(at)], self.keys[torch.from_numpy(bank)]).numpy()
            cells[at] = self.patches[bank[best]]
        return from_cells(cells, len(decoded))


def memory_hits(memory: PatchMemory, codes: np.ndarray) -> np.ndarray:
    from dreamvid.models.patch_memory import cell_keys
    done = np.zeros(codes.size, bool)
    for shape, (keys, _) in memory.tables.items():
        key = cell_keys(codes, shape, memory.code_count)
        at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        done |= keys[at] == key
    return done


@torch.no_grad()
def variants(vae, train_frames: np.ndarray, heldout: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    def codes_of(frames):
        return np.concatenate([vae.quantise.code(vae.encode(frames_to_tensor(frames[i:i + 256]))[0]).numpy()
                               for i in range(0, len(frames), 256)])
    train_codes, codes = codes_of(train_frames), codes_of(heldout)
    decoded = tensor_to_frames(vae.decode(vae.encode(frames_to_tensor(heldout))[0]))
    memory = PatchMemory.build(train_codes, train_frames, vae.quantise.codes)
    remembered = memory.apply(codes, decoded)
    done = memory_hits(memory, codes)
    nowhere = np.zeros_like(done)
    out = {"decoder": decoded, "memory": remembered}
    for kind in KINDS:
        fallback = NearestFallback(vae, train_frames, train_codes, kind, seed)
        out[f"memory+{kind}"] = fallback.apply(codes, remembered, done)
        out[f"{kind}-only"] = fallback.apply(codes, decoded, nowhere)
    print(f"  memory hits {done.mean():.3f}", file=sys.stderr)
    return out


def score(recon: np.ndarray, source: M.Source, heldout: np.ndarray) -> dict:
    return {"psnr": round(M.psnr_ssim(recon, heldout)["psnr"], 2),
            "sharpness": round(float(M.laplacian_var(recon).mean() / max(M.laplacian_var(heldout).mean(), 1e-6)), 3),
            "realism": round(realism_ratio(recon, source), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", nargs="+", default=["bikes", "carphone", "enduro"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--seconds", type=float, default=150)
    args = parser.parse_args()
    base = PRESETS["default"]().vae
    for clip in args.clips:
        train_frames, heldout, fps = frames_of(clip)
        source = M.Source(train_frames, heldout, fps)
        for seed in args.seeds:
            vae, steps = train(base, train_frames, args.seconds, seed)
            recons = variants(vae, train_frames, heldout, seed)
            strip = np.concatenate([np.concatenate(list(heldout[::max(1, len(heldout) // 6)][:6]), 1)]
                                   + [np.concatenate(list(r[::max(1, len(r) // 6)][:6]), 1) for r in recons.values()])
            cv2.imwrite(str(WORK / f"{clip}-{seed}.png"), cv2.resize(strip[..., ::-1], None, fx=3, fy=3,
                                                                    interpolation=cv2.INTER_NEAREST))
            for name, recon in recons.items():
                print(json.dumps({"clip": clip, "seed": seed, "variant": name, "steps": steps,
                                  **score(recon, source, heldout)}), flush=True)


if __name__ == "__main__":
    main()
