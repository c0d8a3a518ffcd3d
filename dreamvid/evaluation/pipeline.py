"""`dreamvid eval`: from a run (or plain frame arrays) to report.json and report.html.

`evaluate` checks its arguments, generates the dream (or reads `--dream`), measures the models
(`model_metrics.measure_models`) and hands over to `report_from_frames`, which scores the dream (`scoring.score`),
calibrates with the reference dreams (`calibration`) and writes the report (`write_outputs`).
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..dreaming import load
from ..errors import DreamvidError, UsageError
from ..files import atomic_write_text
from ..rundir import REPORT_HTML, REPORT_JSON, RunDir
from ..video import read_frames
from . import metrics as M
from .calibration import STRIP_FRAMES, calibrate, flag_ranges, flags_for
from .model_metrics import measure_models
from .report import write_report
from .scoring import check_frames, prepare_source, realism_ratio, score

REPORT_VERSION = 1


def evaluate(run_dir, *, dream=None, frames: int = 10000, temperature: float | None = None, seed: int = 0,
             reproject: bool = False, out=None, force: bool = False, progress: bool = True) -> dict:
    """Evaluate a run: generate a `frames`-long dream (or read the video `dream`), score it against the
    run's training and held-out frames, calibrate with reference dreams, add the model's reconstruction,
    prediction and diversity numbers, and write report.json and report.html to `out` (default
    RUN_DIR/eval, whose report is replaced; another folder's only with `force`). `temperature` None uses the
    run's default; `reproject` dreams as `Dreamer.session` says. Returns the report."""
    run, dream, out = _check_arguments(run_dir, dream, frames, temperature, reproject, out, force)
    started = time.perf_counter()
    dreamer = load(run.path)
    temperature = float(dreamer.config.rnn.temperature) if temperature is None else temperature
    train, heldout = _source_splits(dreamer, run)
    meta = {"run_dir": str(run.path), "temperature": temperature, "reproject": reproject}
    timings: dict = {}
    with _timed(timings, "dream_s"):
        if dream is not None:
            dream_frames, meta["dream"] = _read_dream(dreamer, dream), str(dream)
        else:
            dream_frames, meta["dream"] = _generate_dream(dreamer, frames, temperature, seed, reproject, progress)
    with _timed(timings, "model_s"):
        _say(progress, "reconstruction, prediction and diversity on held-out frames")
        model = measure_models(dreamer, heldout, temperature=temperature, seed=seed)
        meta["diversity_seed_frame"] = model.seed_frame
    return report_from_frames(dream_frames, train, heldout, dreamer.fps, out=out, seed=seed,
                              diversity_dreams=model.diversity_dreams, model=model.groups,
                              reconstructed=model.reconstructed, meta=meta, progress=progress, timings=timings,
                              started=started)


def _check_arguments(run_dir, dream, frames, temperature, reproject, out,
                     force: bool = False) -> tuple[RunDir, Path | None, Path]:
    """The run folder, the --dream video and the output folder, or a usage error naming what is wrong."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        problem = "is not a folder" if run.path.exists() else "does not exist"
        raise UsageError(f"{run.path} {problem}", "pass a RUN_DIR made by dreamvid train")
    if temperature is not None and not temperature > 0:
        raise UsageError(f"temperature must be greater than 0, got {temperature}", "use e.g. --temperature 1.0")
    if dream is None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 2):
        raise UsageError(f"--frames must be a whole number of at least 2, got {frames}")
    if dream is not None:
        dream = _check_dream_path(Path(dream), reproject)
    if out is not None and not force:
        taken = [Path(out) / name for name in (REPORT_JSON, REPORT_HTML) if (Path(out) / name).exists()]
        if taken:
            raise UsageError(f"{taken[0]} exists", "pass --force to replace it, or choose another -o")
    out = Path(out) if out is not None else run.eval_dir
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", "choose another -o")
    return run, dream, out


def _check_dream_path(dream: Path, reproject: bool) -> Path:
    if reproject:
        raise UsageError("--reproject changes how a dream is made; a given --dream video is scored as it is",
                         "drop --reproject, or drop --dream to score a new re-projected dream")
    if not dream.exists():
        raise UsageError(f"{dream} does not exist", "check the --dream path")
    if dream.is_dir():
        raise UsageError(f"{dream} is a folder, not a video", "pass a video file to --dream")
    return dream


def _source_splits(dreamer, run: RunDir) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The run's training and held-out frames, from its frame cache."""
    cache = run.frame_cache(dreamer.config.data.cache_key)
    if cache is None:
        raise DreamvidError(f"{run.path} has no frame cache left to compare the dream with",
                            f"rebuild it by resuming the run: dreamvid train -o {run.path} --resume")
    return cache.split("train"), cache.split("val")


def _read_dream(dreamer, path: Path) -> np.ndarray:
    """The frames of a given dream video, read at the run's size, frame rate and crop."""
    frames = list(read_frames(path, size=int(dreamer.size), fps=float(dreamer.fps), crop=dreamer.config.data.crop))
    if len(frames) < 2:
        raise DreamvidError(f"{path} has {len(frames)} frame(s); a dream needs at least 2 to score")
    return np.stack(frames)


def _generate_dream(dreamer, frames: int, temperature: float, seed: int, reproject: bool,
                    progress: bool) -> tuple[np.ndarray, str]:
    """A new `frames`-long dream, and how it was made (for the report)."""
    size = int(dreamer.size)
    out = np.empty((frames, size, size, 3), np.uint8)
    n = 0
    with tqdm(total=frames, desc="dreaming", unit="frame", file=sys.stderr, leave=False,
              disable=not progress) as bar:
        for batch in dreamer.dream(frames=frames, temperature=temperature, seed=seed, reproject=reproject).batches():
            batch = np.asarray(batch)[:frames - n]
            out[n:n + len(batch)] = batch
            n += len(batch)
            bar.update(len(batch))
    how = f"generated: {n} frames at temperature {temperature:g}, seed {seed}" + (", re-projected" if reproject else "")
    return out[:n], how


# ---------------------------------------------------------------------------------------------- from arrays


def report_from_frames(dream_frames, train_frames, heldout_frames, fps: float, *, out=None, seed: int = 0,
                       diversity_dreams=None, model: dict | None = None, reconstructed=None,
                       meta: dict | None = None, progress: bool = False, timings: dict | None = None,
                       started: float | None = None) -> dict:
    """Score a dream given as arrays, calibrate with the reference dreams, and (if `out`) write
    report.json and report.html there. `model`: extra groups (reconstruction, prediction) to include;
    `reconstructed`: the VAE's reconstructions of held-out frames, scored for realism beside the dream;
    `timings`/`started` (a time.perf_counter() value): earlier stages to count in the report's timings."""
    timings = dict(timings or {})
    started = time.perf_counter() if started is None else started
    _say(progress, "preparing the source")
    with _timed(timings, "source_s"):
        src = prepare_source(train_frames, heldout_frames, fps, seed)
    dream = check_frames(dream_frames, "dream frames", src.side)
    _say(progress, f"scoring the dream ({len(dream)} frames)")
    with _timed(timings, "score_s"):
        result = score(dream, source=src, diversity_dreams=diversity_dreams, seed=seed)
    metrics = _with_model_groups(result["metrics"], model, reconstructed, src, seed)
    with _timed(timings, "calibration_s"):
        cal = calibrate(src, len(dream), seed=seed, progress=lambda name: _say(progress, f"scored reference '{name}'"))
        ranges = flag_ranges(cal)
    timings["total_s"] = time.perf_counter() - started
    report = {"version": REPORT_VERSION, "meta": _meta(meta, src, dream, seed), "metrics": metrics,
              "flags": flags_for(metrics, ranges), "ranges": ranges,
              "calibration": {name: {"metrics": r["metrics"], "flags": flags_for(r["metrics"], ranges)}
                              for name, r in cal.items()},
              "series": result["series"], "timings": timings}
    if out is not None:
        write_outputs(report, Path(out), _strips(dream, src, cal, diversity_dreams))
    return report


def _with_model_groups(scored: dict, model: dict | None, reconstructed, src: M.Source, seed: int) -> dict:
    """The model's groups first, then the dream's; the reconstructions' realism ratio joins reconstruction."""
    metrics = {**(model or {}), **scored}
    if reconstructed is not None and "reconstruction" in metrics:
        frames = check_frames(reconstructed, "reconstructions", src.side)
        metrics["reconstruction"] = {**metrics["reconstruction"], "realism_ratio": realism_ratio(frames, src, seed)}
    return metrics


def _meta(meta: dict | None, src: M.Source, dream: np.ndarray, seed: int) -> dict:
    return {**(meta or {}), "fps": src.fps, "size": src.side, "dream_frames": int(len(dream)),
            "train_frames": int(len(src.frames)), "heldout_frames": int(sum(len(s) for s in src.heldout)),
            "sequences": len(src.train), "seed": seed}


def _strips(dream: np.ndarray, src: M.Source, cal: dict, diversity_dreams) -> dict:
    """The report's frame strips: {label: frames}."""
    middle = len(dream) // 2
    heldout = M.concat(src.heldout)
    strips = {"dream (spread over the whole dream)": dream[M.evenly(len(dream), STRIP_FRAMES)],
              "dream (8 consecutive frames)": dream[middle:middle + STRIP_FRAMES],
              "source (training frames)": src.frames[M.evenly(len(src.frames), STRIP_FRAMES)],
              "held-out source": heldout[M.evenly(len(heldout), STRIP_FRAMES)]}
    for name, r in cal.items():
        strips[f"reference: {name}"] = r["strip"]
    if diversity_dreams is not None and len(diversity_dreams) >= 2:
        strips["diversity: last frame of each dream from one seed frame"] = np.stack(
            [np.asarray(d)[-1] for d in diversity_dreams])
    return strips


@contextmanager
def _timed(timings: dict, key: str):
    """Add the seconds the block takes to `timings` as `key`."""
    t = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"eval: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- files


def _jsonable(value):
    """`value` as strict JSON data: numpy numbers as Python ones, a number that does not exist as None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_outputs(report: dict, out: Path, strips: dict | None = None) -> None:
    """Write report.json and report.html (with the frame `strips`) into `out`."""
    report = _jsonable(report)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / REPORT_JSON, json.dumps(report, indent=1))
    except OSError as error:
        raise DreamvidError(f"cannot write the report to {out} ({error.strerror or error})",
                            "choose another -o") from None
    write_report(report, out / REPORT_HTML, strips=strips)
