"""Whole measurement of the patch memory: the spatial table's trained cells, each given the memory that its
encode stage now builds (the same function, on the same VAE and frame cache), scored again as `presets.py grid`
scores a cell. The memory depends only on the VAE and the training frames, so this is the run as trained today,
without another 10 minutes of training each.

    python lab/patch_memory_rescore.py /tmp/res10 /tmp/res10-memory
    python benchmarks/presets.py table /tmp/res10-memory
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import dreamvid
from dreamvid.dreaming import load
from dreamvid.rundir import RunDir
from dreamvid.training.vae_stage import build_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from presets import realism_drift  # noqa: E402


def rescore(cell: Path, dest: Path) -> None:
    summary = json.loads((cell / "summary.json").read_text())
    target = dest / cell.name
    if (target / "summary.json").is_file():
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(cell / "run", target / "run", ignore=shutil.ignore_patterns("eval", "dreams"))
    dreamer = load(target / "run")
    RunDir(target / "run").save_memory(build_memory(dreamer.vae, dreamer.cache, dreamer.latents["mu"]).state_dict())
    started = time.monotonic()
    report = dreamvid.evaluate(target / "run", frames=summary["frames"], seed=summary["seed"], out=target / "eval",
                               progress=False)
    metrics = report["metrics"]
    metrics.setdefault("drift", {})["realism_last_over_first"] = realism_drift(report)
    summary.update(metrics=metrics, eval_s=round(time.monotonic() - started, 1))
    (target / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(target, flush=True)


if __name__ == "__main__":
    source, dest = Path(sys.argv[1]), Path(sys.argv[2])
    for cell in sorted(source.glob("*/summary.json")):
        rescore(cell.parent, dest)
