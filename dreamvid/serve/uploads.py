"""Videos uploaded from the page: the training form, the file written while it arrives (never past the size
limit), and the check that it really is a video (decoded, not judged by its name)."""
from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Mapping

from starlette.exceptions import HTTPException

from ..errors import DreamvidError, UsageError
from ..video import READABLE_SUFFIXES
from .runs import safe_name

WRITE_BYTES = 1 << 20  # an upload is written to disk in blocks of this size


def human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024


@dataclass(frozen=True)
class UploadForm:
    """The query of POST /api/upload, checked: `filename` as the user's computer named the file, `name` for the
    new run (may be empty: the file's stem), a preset, a frame size and a time budget in minutes."""

    filename: str
    name: str
    preset: str
    size: int
    minutes: float

    @classmethod
    def read(cls, query: Mapping[str, str]) -> "UploadForm":
        from ..config import PRESETS, SUPPORTED_SIZES

        preset = query.get("preset") or "default"
        if preset not in PRESETS:
            raise UsageError(f"unknown preset {preset!r}", f"choose one of {', '.join(PRESETS)}")
        try:
            size = int(query.get("size") or 64)
            minutes = float(query.get("minutes") or 5)
        except ValueError:
            raise UsageError("size and minutes must be numbers") from None
        if size not in SUPPORTED_SIZES:
            raise UsageError(f"size {size} is not supported", f"use one of {', '.join(map(str, SUPPORTED_SIZES))}")
        if not (math.isfinite(minutes) and 0.05 <= minutes <= 24 * 60):
            raise UsageError("minutes must be between 0.05 and 1440")
        filename = query.get("filename") or "upload"
        if Path(filename).suffix.lower() not in READABLE_SUFFIXES:
            raise UsageError(f"{Path(filename).name[:100]} is not named as a video file",
                             f"upload one ending in {', '.join(READABLE_SUFFIXES)}")
        return cls(filename, query.get("name") or "", preset, size, minutes)

    @property
    def shown_name(self) -> str:
        """The file's own name, as errors show it."""
        return Path(self.filename).name[:100]

    @property
    def run_name(self) -> str:
        return safe_name(self.name or Path(self.filename).stem, "run", 60)

    def stored_path(self, uploads_dir: Path, job_id: str) -> Path:
        """Where the upload is kept: under the job's id and the original name made safe, never elsewhere."""
        stem = safe_name(Path(self.filename).stem, "upload", 50)
        suffix = safe_name(Path(self.filename).suffix, "", 10)
        stored = uploads_dir / f"{job_id}-{stem}{'.' + suffix if suffix else ''}"
        assert stored.resolve().parent == uploads_dir.resolve()
        return stored


def refuse_declared_size(content_length: str | None, limit: int) -> None:
    """Refuse an upload whose Content-Length is already over the limit, before reading any of it."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise HTTPException(413, f"the file is {human_size(int(content_length))}, over the {human_size(limit)} "
                                 f"upload limit")


async def receive(chunks: AsyncIterator[bytes], path: Path, limit: int) -> None:
    """Write the body to `path` as it arrives, through a hidden partial file; past `limit` bytes, or when
    empty, it is refused and nothing is left behind."""
    partial = path.with_name("." + path.name + ".part")
    received, pending = 0, bytearray()
    try:
        with open(partial, "wb") as f:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise HTTPException(413, f"the file is over the {human_size(limit)} upload limit")
                pending += chunk
                if len(pending) >= WRITE_BYTES:   # the disk is written off the event loop, a block at a time
                    await asyncio.to_thread(f.write, bytes(pending))
                    pending.clear()
            await asyncio.to_thread(f.write, bytes(pending))
        if received == 0:
            raise UsageError("the upload is empty", "choose a video file")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def keep_if_video(path: Path, shown: str) -> None:
    """Decode the file (not its name) to be sure it is a video: probe it, then read one frame; when it is not one,
    delete it. Errors name the file as the user called it (`shown`), not by where the server stored it."""
    from .. import video

    try:
        video.probe(path)
        first = next(iter(video.read_frames(path, size=32)), None)
    except DreamvidError as exc:  # a usage error about a stored file is the upload's failure, not the user's usage
        error = DreamvidError(str(exc).replace(str(path), shown))
    except Exception as exc:  # the decoder's own complaint, in one line
        error = DreamvidError(f"{shown} is not a video that can be decoded ({type(exc).__name__}: {exc})",
                              "upload a video file such as mp4, mkv, webm, mov or avi")
    else:
        error = None if first is not None else DreamvidError(
            f"{shown} has a video stream but no frame could be decoded from it",
            "upload a video with at least a few seconds of picture")
    if error is not None:
        path.unlink(missing_ok=True)
        raise error from None
