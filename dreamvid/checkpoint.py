"""Tensors on disk: weights and optimizer state as safetensors, written atomically, read without pickles.

Weights are safetensors; optimizer state is flattened into safetensors tensors plus JSON scalars, so
`--resume` never unpickles anything from a user's folder.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import DreamvidError
from .files import atomic_replace


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a checkpoint file atomically; the file it replaces stays as `previous_path(path)` (a hard link, no
    copy), so that a checkpoint written but never committed can be undone (`RunDir.settle_checkpoint`)."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _keep_previous(Path(path))
    atomic_replace(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata), write_errors=(SafetensorError,))


def previous_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


def _keep_previous(path: Path) -> None:
    if not path.is_file():
        return
    link = path.with_name(f".{path.name}.{secrets.token_hex(4)}.link")
    try:
        os.link(path, link)
        os.replace(link, previous_path(path))
    except OSError as error:   # a file system without hard links: no undo for this write, the write goes on
        link.unlink(missing_ok=True)
        if error.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP):
            raise DreamvidError(f"cannot write next to {path}: {error.strerror.lower()}",
                                "free some disk space or fix the folder's permissions") from None


def file_digest(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DreamvidError(f"{path} is missing", "the run is incomplete: train it again, or --resume it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DreamvidError(f"{path} is damaged ({str(exc).splitlines()[0]})",
                            "restore it or train the run again") from None


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights into `module`, naming a mismatch instead of raising torch's wall of text."""
    state = load_tensors(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        detail = (missing and f"missing {missing[:3]}") or (unexpected and f"unexpected {unexpected[:3]}") \
            or f"wrong shape for {wrong_shape[:3]}"
        raise DreamvidError(f"{path} does not fit the model in config.json ({detail})",
                            "the run was made with another preset or version: train it again")
    module.load_state_dict(state)


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value for index, slots in state["state"].items()
               for name, value in slots.items() if isinstance(value, torch.Tensor)}
    scalars = {f"{index}.{name}": value for index, slots in state["state"].items()
               for name, value in slots.items() if not isinstance(value, torch.Tensor)}
    metadata = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    save_tensors(path, tensors, metadata)


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    from safetensors import safe_open
    tensors = load_tensors(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    try:
        param_groups = json.loads(metadata["param_groups"])
        scalars = json.loads(metadata["scalars"])
    except (KeyError, ValueError):
        raise DreamvidError(f"{path} has no optimizer metadata", "start the run again with --force") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(scalars.items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
