"""Files written whole or not at all, and JSON read without trusting it.

A write goes to a temporary file beside its target, is flushed to disk, renamed over the target, and the folder is
flushed too: after a crash or a power cut the target is either the old file or the new one, never a torn mix.
Nothing here imports torch, so the studio's job queue and the CLI can use it cheaply.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

from .errors import DreamvidError


def atomic_replace(path: str | Path, write: Callable[[str], None],
                   write_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Call write(temp_path), then make that file `path`. The temp file is made with open(), not tempfile, so the
    result gets the usual permissions (tempfile's 0600 would stick after the rename). A failed write (a full
    disk, a file-size limit, no permission: an OSError, or one of `write_errors` from a writer that wraps its
    own) is a DreamvidError, and `path` is left as it was."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        write(str(tmp))
        _fsync(tmp)
        os.replace(tmp, path)
    except (OSError, *write_errors) as error:
        _remove(tmp)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]
        raise DreamvidError(f"cannot write {path}: {reason.lower()}",
                            "free some disk space or fix the folder's permissions; the previous file is kept") \
            from None
    except BaseException:
        _remove(tmp)
        raise
    _fsync(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_replace(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2))


def read_json(path: str | Path) -> dict | None:
    """The JSON object in `path`, or None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove(path: Path) -> None:
    """Delete `path` if it is there; where it cannot be (its folder is a file, or gone), there is nothing to."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:  # a folder some systems will not open: the rename itself is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
