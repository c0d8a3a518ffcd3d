"""What one studio allows at once, each a `dreamvid serve` option: viewers, uploads in flight, jobs in the queue,
the data folder's size, the host names it answers to off loopback; and the lock that keeps a second studio off
its data folder (two would run the same queued job twice)."""
from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import DreamvidError

GB = 1024 ** 3


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 2 * GB        # one upload
    max_viewers: int = 8                  # live dreams at once: each is a thread that dreams at up to 120 fps
    max_uploads: int = 2                  # uploads being received at once
    max_queue: int = 20                   # jobs queued or running
    max_data_bytes: int = 50 * GB         # uploads and new runs under the data folder
    allowed_hosts: tuple[str, ...] = ()   # Host names accepted besides loopback (needed off loopback)

    def __post_init__(self):
        if min(self.max_upload_bytes, self.max_viewers, self.max_uploads, self.max_queue, self.max_data_bytes) < 1:
            raise ValueError("every studio limit must be at least 1")


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (links not followed; files that vanish while counted are skipped)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


@contextlib.contextmanager
def data_folder_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `data_dir` for as long as the studio runs; a DreamvidError if another holds it.
    The kernel drops the lock when the process ends, however it ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DreamvidError(f"another dreamvid serve is using the data folder {data_dir}",
                            "stop it, or give this one another --data-dir") from None
    try:
        yield
    finally:
        handle.close()
