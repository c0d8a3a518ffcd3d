"""The studio's view of run folders: which runs exist, their previews, reports, recorded dreams and logs.

Runs are addressed in URLs by a short hash of their resolved path, never by a path, so nothing a page sends can
name a file outside the run folders the server was given.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from pathlib import Path

from ..errors import UsageError
from .jobs import read_json

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


def is_run(path: Path) -> bool:
    return (Path(path) / "config.json").is_file()


def latest_preview(run_dir: Path, prefer: str = "dream") -> Path | None:
    """The newest preview PNG whose name has `prefer` in it (else any but the loss plot, which the page draws)."""
    previews = Path(run_dir) / "previews"
    try:
        files = [p for p in previews.iterdir() if p.suffix.lower() == ".png" and p.is_file()
                 and "loss" not in p.name.lower()]
    except OSError:
        return None
    if not files:
        return None
    preferred = [p for p in files if prefer in p.name.lower()]
    return max(preferred or files, key=lambda p: (p.stat().st_mtime, p.name))


def dreams_of(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / "dreams"
    try:
        files = [p for p in folder.iterdir() if DREAM_NAME.match(p.name) and p.is_file()]
    except OSError:
        return []
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


class RunRegistry:
    """Run folders given on the command line, plus every run found in the runs folders (rescanned each time)."""

    def __init__(self, run_dirs: list[Path], roots: list[Path], busy: callable = lambda: set()):
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
                if is_run(child):
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
        if path is None or not is_run(path):
            raise UsageError("no such run here", "pick one from the list of runs")
        return path

    def describe(self, path: Path) -> dict:
        path = Path(path).resolve()
        rid = run_id(path)
        progress = read_json(path / "progress.json")
        weights = (path / "vae.safetensors").is_file() and (path / "rnn.safetensors").is_file()
        training = str(path) in self._busy()
        status = "training" if training else ("ready" if weights else "incomplete")
        config = read_json(path / "config.json") or {}
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
            "progress": progress,
            "preview": f"/api/runs/{rid}/preview?t={int(preview.stat().st_mtime)}" if preview else None,
            "report": f"/api/runs/{rid}/report" if (path / "eval" / "report.html").is_file() else None,
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


_curve_cache: dict[str, tuple[tuple[int, float], dict]] = {}
_curve_lock = threading.Lock()


def loss_curves(log_path: Path, max_points: int = 300) -> dict:
    """{"stage": {"train": [[i, loss], ...], "val": [[i, loss], ...]}} from a run's log.jsonl, downsampled."""
    try:
        st = log_path.stat()
    except OSError:
        return {}
    key = (st.st_size, st.st_mtime)
    with _curve_lock:
        hit = _curve_cache.get(str(log_path))
        if hit is not None and hit[0] == key:
            return hit[1]
    stages: dict[str, dict[str, list]] = {}
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict):
                    continue
                stage = str(rec.get("stage", "train"))[:20]
                curves = stages.setdefault(stage, {"train": [], "val": [], "n": 0})
                x = curves["n"]  # records in log order: steps and epochs both count up
                curves["n"] += 1
                for name, field in (("train", "train_loss"), ("val", "val_loss")):
                    v = rec.get(field)
                    if isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
                        curves[name].append([x, float(v)])
    except OSError:
        return {}
    for curves in stages.values():
        del curves["n"]
        for name, points in curves.items():
            if len(points) > max_points:
                step = len(points) / max_points
                curves[name] = [points[int(j * step)] for j in range(max_points - 1)] + [points[-1]]
    with _curve_lock:
        if len(_curve_cache) > 64:
            _curve_cache.clear()
        _curve_cache[str(log_path)] = (key, stages)
    return stages
