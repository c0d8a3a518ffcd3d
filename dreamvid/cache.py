"""The on-disk uint8 frame cache of a run: `<cache_root>/<key>/frames.u8` (N, S, S, 3) + `index.json`.

It also owns the held-out split: the last tenth of every source is never trained on (`split_ranges`).
"""
from __future__ import annotations

import collections.abc as abc
import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dreamvid.errors import DreamvidError, UsageError
from dreamvid.video import MAX_FRAMES, VideoInfo, check_read_settings, probe, read_frames

FORMAT_VERSION = 1
DEFAULT_MAX_FPS = 30.0
PARTS = ("train", "val")
HELD_OUT_PERCENT = 10  # of every sequence, at its end
FIX_CACHE = "delete that folder; it is rebuilt from the source videos on the next run"
DISK_RESERVE = 256 << 20  # bytes left free on the cache's disk: building stops before the disk is full
SPACE_CHECK_EVERY = 512   # frames written between two checks of the free space


@dataclass
class Sequence:
    """One source video's frames: global indices [start, stop) into the cache."""

    name: str
    source: str
    start: int
    stop: int


@dataclass
class FrameCache:
    directory: Path
    frames: np.ndarray  # np.memmap, read-only, (N, size, size, 3) uint8
    sequences: list[Sequence]
    fps: float
    size: int
    crop: str

    @classmethod
    def open(cls, directory: str | Path) -> FrameCache:
        directory = Path(directory)
        try:
            index = json.loads((directory / "index.json").read_text())
        except FileNotFoundError:
            raise DreamvidError(f"{directory} is not a frame cache (no index.json)", FIX_CACHE) from None
        except (OSError, ValueError) as error:
            raise DreamvidError(f"frame cache {directory} is damaged: unreadable index.json ({error})",
                                FIX_CACHE) from None
        if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
            raise DreamvidError(f"frame cache {directory} has an unknown format", FIX_CACHE)
        try:
            size = int(index["size"])
            sequences = [Sequence(**entry) for entry in index["sequences"]]
            cache = cls(directory, _map_frames(directory / "frames.u8", size, sequences), sequences,
                        float(index["fps"]), size, str(index["crop"]))
        except (KeyError, TypeError, ValueError) as error:
            raise DreamvidError(f"frame cache {directory} is damaged ({error})", FIX_CACHE) from None
        return cache

    def __len__(self) -> int:
        return len(self.frames)

    def split_ranges(self, part: str) -> list[tuple[int, int]]:
        """Global [start, stop) per sequence: "val" is the last HELD_OUT_PERCENT of each (>= 1 frame), "train"
        the rest.

        There is one range per sequence, in order; a very short sequence may give an empty train range.
        """
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        ranges = []
        for sequence in self.sequences:
            boundary = max(sequence.start, sequence.stop - held_out_length(sequence.stop - sequence.start))
            ranges.append((sequence.start, boundary) if part == "train" else (boundary, sequence.stop))
        return ranges

    def split(self, part: str) -> list[np.ndarray]:
        """The frames of `split_ranges(part)`, as memmap slices (nothing is read until used)."""
        return [self.frames[start:stop] for start, stop in self.split_ranges(part)]


def held_out_length(frames: int) -> int:
    """The held-out tail of a sequence of `frames`: HELD_OUT_PERCENT, rounded up, at least one frame (integer
    maths: 0.1 * 30 > 3 in floats)."""
    return max(1, -(-frames * HELD_OUT_PERCENT // 100))


def minimum_frames(window: int) -> int:
    """Fewest frames a sequence needs to train a `window`-frame dream model: a full window (plus the frame it
    predicts) before the held-out tail, and a tail of at least two frames to score."""
    frames = window + 1
    while frames - held_out_length(frames) < window + 1 or held_out_length(frames) < 2:
        frames += 1
    return frames


def build_cache(sources: abc.Sequence[str | Path], cache_root: str | Path, *, size: int, fps: float | None,
                crop: str, progress: bool = True, warn: abc.Callable[[str], None] | None = None) -> FrameCache:
    """Decode `sources` into a frame cache under `cache_root`, or reuse the one built with the same inputs.

    The key hashes the sources' bytes and the settings, so renamed files still hit and edited ones miss.
    With fps None every source uses min(first source's fps, 30), so the sequences share one rate.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if not sources:
        raise UsageError("no source videos given", "pass at least one video file")
    check_read_settings(size, fps, crop)
    infos = [probe(source) for source in sources]  # a bad last file fails before any decoding
    rate = fps if fps is not None else min(infos[0].fps, DEFAULT_MAX_FPS)
    hashes = [file_sha256(info.path) for info in infos]
    key = _cache_key(hashes, size, rate, crop)
    cache_root = Path(cache_root)
    target = cache_root / key
    if (target / "index.json").exists():
        try:
            return FrameCache.open(target)
        except DreamvidError:
            pass  # damaged: rebuild it below
    _make_directory(cache_root)
    temp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".part", dir=cache_root))
    try:
        sequences = _write_frames(infos, temp / "frames.u8", size, rate, crop, progress, warn)
        index = {"format_version": FORMAT_VERSION, "size": size, "fps": rate, "crop": crop,
                 "sequences": [asdict(sequence) for sequence in sequences],
                 "sources": [{"path": str(info.path.resolve()), "sha256": digest}
                             for info, digest in zip(infos, hashes)]}
        (temp / "index.json").write_text(json.dumps(index, indent=1))
        if target.exists():
            shutil.rmtree(target)
        temp.rename(target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return FrameCache.open(target)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _cache_key(hashes: list[str], size: int, fps: float, crop: str) -> str:
    settings = {"sources": hashes, "size": size, "fps": fps, "crop": crop, "format_version": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _write_frames(infos: list[VideoInfo], path: Path, size: int, fps: float, crop: str, progress: bool,
                  warn: abc.Callable[[str], None] | None) -> list[Sequence]:
    """Append every source's frames to `path` as raw bytes; one Sequence per source. The free disk space is
    checked before (against the declared lengths, each capped as reading caps it) and while writing."""
    sequences: list[Sequence] = []
    expected = [min(info.duration * fps, MAX_FRAMES) for info in infos if info.duration]
    total = round(sum(expected)) if len(expected) == len(infos) else None
    frame_bytes = size * size * 3
    _require_space(path.parent, (total or 0) * frame_bytes, "")
    with open(path, "wb", buffering=0) as file, \
            tqdm(total=total, unit="frame", desc="decoding", disable=not progress) as bar:
        count = 0
        for info in infos:
            start = count
            for frame in read_frames(info.path, size=size, fps=fps, crop=crop, warn=warn):
                _write(file, frame, path)
                count += 1
                bar.update()
                if count % SPACE_CHECK_EVERY == 0:
                    _require_space(path.parent, 0, f" after {count} frames")
            sequences.append(Sequence(name=_unique_name(info.path, sequences), source=str(info.path.resolve()),
                                      start=start, stop=count))
    return sequences


def _require_space(folder: Path, needed: int, when: str) -> None:
    """A DreamvidError unless `folder`'s disk has `needed` bytes free beyond DISK_RESERVE."""
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_RESERVE:
        raise DreamvidError(f"not enough disk space for the frame cache{when}: {_gigabytes(free)} free on "
                            f"{folder}, it needs {_gigabytes(needed + DISK_RESERVE)}",
                            "free some space, or use a smaller --size or a lower --fps")


def _write(file, frame: np.ndarray, path: Path) -> None:
    try:
        file.write(frame.data)
    except OSError as error:
        raise DreamvidError(f"cannot write the frame cache {path}: {error.strerror.lower()}",
                            "free some disk space and train again") from None


def _gigabytes(count: int) -> str:
    return f"{count / 2 ** 30:.2f} GB"


def _unique_name(path: Path, sequences: list[Sequence]) -> str:
    taken = {sequence.name for sequence in sequences}
    name, number = path.stem, 2
    while name in taken:
        name, number = f"{path.stem}-{number}", number + 1
    return name


def _map_frames(path: Path, size: int, sequences: list[Sequence]) -> np.ndarray:
    frame_bytes = size * size * 3
    count = sequences[-1].stop if sequences else 0
    actual = path.stat().st_size if path.exists() else -1
    if count == 0 or actual != count * frame_bytes:
        raise ValueError(f"frames.u8 holds {max(actual, 0)} bytes, the index says {count} frames of {size}px")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(count, size, size, 3))


def _make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DreamvidError(f"cannot create cache folder {path}: {error.strerror.lower()}",
                            "choose another output folder") from None
