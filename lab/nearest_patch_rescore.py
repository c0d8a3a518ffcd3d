"""Lab (issue 19): whole runs' dreams decoded through the patch memory with and without the nearest-patch table.

`lab/nearest_patch_screen.py` measured held-out reconstructions of a VAE trained alone. Here the runs of
`python benchmarks/presets.py grid -o RES --presets default`, trained before the nearest table existed, get each
memory variant written into a copy of the run, and `dreamvid.evaluate` scores a 10,000-frame dream of each, as the
grid does (same dream seed, so the same latents: the memory is decoding only). Variants:

    exact             the run's memory as trained (exact neighbourhoods only): the control
    exact+nearest     dreamvid's memory now: exact neighbourhoods, then the nearest training patch
    dominant+nearest  exact neighbourhoods only where the source decided the patch (seen twice, its commonest
                      patch at least half the time), the nearest training patch everywhere else

    python benchmarks/presets.py grid -o /tmp/res12 --presets default --seeds 0 --frames 2000
    python lab/nearest_patch_rescore.py /tmp/res12 /tmp/res12-nn
    python benchmarks/presets.py table /tmp/res12-nn/exact+nearest

Results (2026-12-07, dev CPU, seed 0, 10,000-frame dreams; exact -> exact+nearest -> dominant+nearest):
    patch realism   enduro 1.12 -> 0.74 -> 0.74, riverraid 0.73 -> 0.45 -> 0.38, bikes 1.85 -> 1.47 -> 1.46,
                    carphone 1.47 -> 1.15 -> 1.01
    sharpness       enduro 0.61 -> 0.71 -> 0.71, riverraid 0.82 -> 0.83 -> 0.83, bikes 1.06 -> 1.19 -> 1.18,
                    carphone 0.80 -> 0.88 -> 0.86
    recon realism   enduro 1.17 -> 0.84 -> 0.81, riverraid 1.03 -> 0.88 -> 0.98, bikes 1.23 -> 0.86 -> 0.81,
                    carphone 1.18 -> 0.87 -> 0.71
    recon sharpness enduro 0.894 -> 0.929 -> 0.925, bikes 0.787 -> 0.794 -> 0.788, carphone 1.05 -> 1.12 -> 1.09
    frame diff      enduro 0.86 -> 0.64 -> 0.64 (the grain's flicker gone), carphone 0.97 -> 1.04 -> 1.17
    flow            enduro 0.55 -> 0.65 -> 0.67, bikes 0.23 -> 0.42 -> 0.43, carphone 0.94 -> 1.27 -> 1.35
    figures met     19 -> 19 -> 19 of 36: bikes +1 (realism within 1.5x), enduro +recon sharpness +25% better
                    than worldmodels -frame difference, carphone -flow +realism, riverraid -drift (0.73 -> 0.45
                    realism moves the last tenth's ratio)
Kept: exact+nearest. dominant+nearest ties on three clips and draws carphone further from its flow band.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import dreamvid
from dreamvid.models.patch_memory import NEIGHBOURHOODS, PatchMemory, _patch_hashes, cell_keys, to_cells
from dreamvid.rundir import RunDir
from dreamvid.training.vae_stage import _range_indices, build_memory
from dreamvid.models.patch_memory import evenly_spaced_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from presets import machine, realism_drift  # noqa: E402


def dominant_tables(codes: np.ndarray, frames: np.ndarray, code_count: int) -> dict:
    cells = to_cells(frames)
    tables = {}
    for shape in NEIGHBOURHOODS:
        keys, hashes = cell_keys(codes, shape, code_count), _patch_hashes(cells)
        order = np.lexsort((hashes, keys))
        key, patch = keys[order], hashes[order]
        starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]) | (patch[1:] != patch[:-1])])
        counts = np.diff(np.r_[starts, len(key)])
        pair_keys, rows = key[starts], order[starts]
        best = np.lexsort((-counts, pair_keys))
        firsts = np.flatnonzero(np.r_[True, pair_keys[best][1:] != pair_keys[best][:-1]])
        seen = np.add.reduceat(counts[best], firsts)
        top = counts[best][firsts]
        chosen = best[firsts][(top >= 2) & (top >= 0.5 * seen)]
        chosen = chosen[np.argsort(pair_keys[chosen])]
        tables[shape] = (pair_keys[chosen], cells[rows[chosen]])
    return tables


def variants(run: Path) -> dict[str, PatchMemory]:
    dreamer = dreamvid.load(run, device="cpu")
    cache, vae, mu = dreamer.cache, dreamer.vae, dreamer.latents["mu"]
    full = build_memory(vae, cache, mu)
    rows = evenly_spaced_rows(_range_indices(cache.split_ranges("train")), int(np.prod(mu.shape[-2:])))
    codes = vae.quantise.code(mu[torch.from_numpy(rows)]).numpy()
    dominant = PatchMemory(dominant_tables(codes, cache.frames[rows], vae.quantise.codes), full.code_count,
                           full.nearest)
    return {"exact": PatchMemory(full.tables, full.code_count), "exact+nearest": full, "dominant+nearest": dominant}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("grid", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    for cell in sorted(p for p in args.grid.iterdir() if (p / "summary.json").is_file()):
        base = json.loads((cell / "summary.json").read_text())
        for name, memory in variants(cell / "run").items():
            if args.only and name not in args.only:
                continue
            dest = args.out / name / cell.name
            if (dest / "summary.json").is_file():
                continue
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(cell / "run", dest / "run", symlinks=True)
            RunDir(dest / "run").save_memory(memory.state_dict())
            started = time.monotonic()
            report = dreamvid.evaluate(dest / "run", frames=args.frames, seed=base["seed"], out=dest / "eval",
                                       progress=False)
            metrics = report["metrics"]
            metrics.setdefault("drift", {})["realism_last_over_first"] = realism_drift(report)
            summary = {**base, "frames": args.frames, "eval_s": round(time.monotonic() - started, 1),
                       "machine": machine(), "memory": name, "metrics": metrics}
            (dest / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
            m = metrics
            print(json.dumps({"cell": cell.name, "memory": name, "realism": m["realism"]["ratio"],
                              "sharpness": m["sharpness"]["ratio"],
                              "recon_sharpness": m["reconstruction"]["sharpness_ratio"],
                              "recon_realism": m["reconstruction"].get("realism_ratio"),
                              "diff": m["motion"]["diff_ratio"], "flow": m["motion"]["flow_ratio"],
                              "replay": m["copying"]["longest_run_frames"], "eval_s": summary["eval_s"]}), flush=True)


if __name__ == "__main__":
    main()
