"""The studio's view of run folders: which runs exist, their previews, reports, recorded dreams and logs.

Runs are addressed in URLs by a short hash of their resolved path, never by a path, so nothing a page sends can
name a file outside the run folders the server was given.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
import threading
import unicodedata
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..files import read_json
from ..rundir import RunDir

DREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.mp4$")


def run_id(path: Path) -> str:
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:12]


def safe_name(name: str, fallback: str = "upload", limit: int = 60) -> str:
    """A file or folder name made only of [A-Za-z0-9._-], with no directory part and no leading dot."""
    name = str(name or "").replace("\\", "/").split("/")[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    name = re.sub(r"\.{2,}", ".", name).strip("._-")
    return name[:limit].rstrip("._-") or fallback


def latest_preview(run_dir: Path, prefer: str = "dream") -> Path | None:
    """The newest preview PNG whose name has `prefer` in it (else any but the loss plot, which the page draws)."""
    previews = RunDir(run_dir).previews_dir
    try:
        files = [p for p in previews.iterdir() if p.suffix.lower() == ".png" and p.is_file()
                 and "loss" not in p.name.lower()]
    except OSError:
        return None
    if not files:
        return None
    preferred = [p for p in files if prefer in p.name.lower()]
    return max(preferred or files, key=lambda p: (p.stat().st_mtime, p.name))


def dream_path(run_dir: Path, name: str) -> Path | None:
    """A recording of the run by its plain name (`DREAM_NAME`), if it is a file right inside RUN_DIR/dreams."""
    folder = RunDir(run_dir).dreams_dir
    path = folder / name
    if DREAM_NAME.match(name) and path.is_file() and path.resolve().parent == folder.resolve():
        return path
    return None


def dreams_of(run_dir: Path) -> list[Path]:
    folder = RunDir(run_dir).dreams_dir
    try:
        files = [p for p in folder.iterdir() if DREAM_NAME.match(p.name) and p.is_file()]
    except OSError:
        return []
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


class RunRegistry:
    """Run folders given on the command line, plus every run found in the runs folders (rescanned each time)."""

    def __init__(self, run_dirs: list[Path], roots: list[Path], busy: Callable[[], set[str]] = set):
        self._explicit = [Path(p).resolve() for p in run_dirs]
        self._roots = [Path(p).resolve() for p in roots]
        self._busy = busy
        self._lock = threading.Lock()
        self._ids: dict[str, Path] = {}

    def paths(self) -> list[Path]:
        seen: dict[Path, None] = {}
        for p in self._explicit:
            seen.setdefault(p)
        for root in self._roots:
            try:
                children = sorted(c for c in root.iterdir() if c.is_dir() and not c.name.startswith("."))
            except OSError:
                continue
            for child in children:
                if RunDir(child).is_run():
                    seen.setdefault(child.resolve())
        with self._lock:
            for p in seen:
                self._ids[run_id(p)] = p
        return list(seen)

    def resolve(self, rid: str) -> Path:
        with self._lock:
            path = self._ids.get(rid)
        if path is None:
            self.paths()
            with self._lock:
                path = self._ids.get(rid)
        if path is None or not RunDir(path).is_run():
            raise UsageError("no such run here", "pick one from the list of runs")
        return path

    def describe(self, path: Path) -> dict:
        path = Path(path).resolve()
        run, rid = RunDir(path), run_id(path)
        training = str(path) in self._busy()
        status = "training" if training else ("ready" if run.is_trained() else "incomplete")
        config = read_json(run.config_path) or {}  # as written, without RunConfig's checks: a gallery never fails
        data = config.get("data", {}) if isinstance(config.get("data"), dict) else {}
        preview = latest_preview(path)
        return {
            "id": rid,
            "name": path.name,
            "path": str(path),
            "status": status,
            "preset": config.get("preset"),
            "size": data.get("size"),
            "fps": data.get("fps"),
            "progress": run.read_progress(),
            "preview": f"/api/runs/{rid}/preview?t={int(preview.stat().st_mtime)}" if preview else None,
            "report": f"/api/runs/{rid}/report" if run.report_path().is_file() else None,
            "dreams": [{"name": p.name, "url": f"/api/runs/{rid}/dreams/{p.name}", "bytes": p.stat().st_size}
                       for p in dreams_of(path)[:20]],
        }

    def list(self) -> list[dict]:
        out = []
        for p in self.paths():
            try:
                out.append(self.describe(p))
            except OSError:
                continue
        return out


def loss_curves(run_dir: Path, max_points: int = 300) -> dict:
    """{"stage": {"train": [[i, loss], ...], "val": [[i, loss], ...]}} from a run's log.jsonl, downsampled.
    Cached until the log changes (the page polls it while a job trains)."""
    run = RunDir(run_dir)
    try:
        st = run.log_path.stat()
    except OSError:
        return {}
    return _loss_curves(run.path, st.st_size, st.st_mtime, max_points)


@functools.lru_cache(maxsize=64)
def _loss_curves(run_dir: Path, size: int, mtime: float, max_points: int) -> dict:
    """`loss_curves` for the log of this size and time (they make the cache key)."""
    stages = _curves(RunDir(run_dir).read_log())
    for curves in stages.values():
        for kind, points in curves.items():
            curves[kind] = _downsample(points, max_points)
    return stages


def _curves(records: list[dict]) -> dict[str, dict[str, list]]:
    """Train and validation losses per stage, x = the record's number within its stage (steps and epochs both
    count up in log order)."""
    stages: dict[str, dict[str, list]] = {}
    counts: dict[str, int] = {}
    for record in records:
        stage = str(record.get("stage", "train"))[:20]
        curves = stages.setdefault(stage, {"train": [], "val": []})
        x = counts[stage] = counts.get(stage, -1) + 1
        for kind, field in (("train", "train_loss"), ("val", "val_loss")):
            value = record.get(field)
            if isinstance(value, (int, float)) and math.isfinite(value):
                curves[kind].append([x, float(value)])
    return stages


def _downsample(points: list, max_points: int) -> list:
    if len(points) <= max_points:
        return points
    step = len(points) / max_points
    return [points[int(j * step)] for j in range(max_points - 1)] + [points[-1]]
