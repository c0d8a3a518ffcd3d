"""The run folder: the one owner of its layout, used by training, dreaming, evaluation and the studio.

    RUN_DIR/
      config.json              RunConfig (written first, read by everything else)
      vae.safetensors          VAE weights
      rnn.safetensors          dream-model weights
      latents.safetensors      every cached frame's latent (mu, logvar) and the sequence / held-out bounds
      memory.safetensors       spatial runs: the patch memory of the training frames (models/patch_memory.py)
      state/                   resume state: train_state.json (the commit marker, written last, with the
                               digest of every checkpoint file), <model>_optimizer.safetensors, rnn_best.safetensors
      .<file>.previous         each checkpoint file's version before its last write (a hard link): what
                               --resume puts back when training was killed before the state committed
      log.jsonl                one JSON object per epoch: stage, epoch, train_loss (its last step's), val_loss,
                               step_losses, elapsed_s
      progress.json            live status for the studio: stage, epoch, step, fraction, eta_s, finished, ...
      previews/                reconstruction.png, dream.png, losses.png, written while training
      cache/<key>/             the frame cache (see cache.py)
      eval/                    `dreamvid eval`'s report
      dreams/                  the studio's recordings

Every write is atomic (files.py); weights and optimizer state are safetensors, so nothing is ever unpickled.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .config import RunConfig
from .errors import DreamvidError, UsageError
from .files import atomic_write_json, atomic_write_text, read_json

# What a run folder holds that dreamvid wrote; `--force` deletes only these, never a user's own files.
REPORT_JSON = "report.json"  # what `dreamvid eval` writes into RUN_DIR/eval (or its own -o folder)
REPORT_HTML = "report.html"
OWN_FILES = ("config.json", "vae.safetensors", "rnn.safetensors", "latents.safetensors", "memory.safetensors",
             "log.jsonl", "progress.json", "state", "previews")


class RunDir:
    """Paths and symmetric save / load of everything in one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._digests: dict[Path, tuple[tuple[int, int, int], str]] = {}   # path -> (its stat, its SHA-256)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- paths -------------------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def weights_path(self, model: str) -> Path:
        return self.path / f"{model}.safetensors"

    def optimizer_path(self, model: str) -> Path:
        return self.path / "state" / f"{model}_optimizer.safetensors"

    @property
    def latents_path(self) -> Path:
        return self.path / "latents.safetensors"

    @property
    def memory_path(self) -> Path:
        return self.path / "memory.safetensors"

    @property
    def state_path(self) -> Path:
        return self.path / "state" / "train_state.json"

    @property
    def best_rnn_path(self) -> Path:
        return self.path / "state" / "rnn_best.safetensors"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def progress_path(self) -> Path:
        return self.path / "progress.json"

    @property
    def previews_dir(self) -> Path:
        return self.path / "previews"

    def preview_path(self, name: str) -> Path:
        return self.previews_dir / name

    @property
    def cache_root(self) -> Path:
        return self.path / "cache"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def report_path(self, name: str = REPORT_HTML) -> Path:
        return self.eval_dir / name

    @property
    def dreams_dir(self) -> Path:
        return self.path / "dreams"

    # --- what the folder is ------------------------------------------------------------------------------

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def is_trained(self) -> bool:
        return self.weights_path("vae").is_file() and self.weights_path("rnn").is_file()

    def is_finished(self) -> bool:
        return bool((self.read_progress() or {}).get("finished"))

    def require_run(self) -> "RunDir":
        """This folder, or a usage error naming what is wrong with it."""
        if not self.path.exists():
            raise UsageError(f"run folder {self.path} does not exist", "train one first: dreamvid train CLIP -o RUN")
        if not self.is_run():
            raise UsageError(f"{self.path} is not a dreamvid run (no config.json)",
                             "point to the folder that dreamvid train wrote")
        return self

    def require_trained(self) -> "RunDir":
        self.require_run()
        if not self.weights_path("rnn").is_file():
            raise DreamvidError(f"{self.path} has not finished training (no rnn.safetensors)",
                                f"finish it: dreamvid train -o {self.path} --resume")
        return self

    def create(self, force: bool = False) -> "RunDir":
        """An empty run folder; with `force`, dreamvid's own files of an earlier run are deleted first."""
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path} exists and is not a folder", "choose another -o")
        if self.is_run():
            if not force:
                raise UsageError(f"{self.path} already holds a run",
                                 "pass --resume to continue it, --force to start it over, or choose another -o")
            self._delete_own_files()
        try:
            self.previews_dir.mkdir(parents=True, exist_ok=True)
            (self.path / "state").mkdir(exist_ok=True)
        except OSError as exc:
            raise DreamvidError(f"cannot create run folder {self.path} ({exc.strerror})",
                                "choose a writable -o") from None
        return self

    def _delete_own_files(self) -> None:
        for path in self.checkpoint_paths():
            checkpoint.previous_path(path).unlink(missing_ok=True)
        for name in OWN_FILES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    # --- config ------------------------------------------------------------------------------------------

    def read_config(self) -> RunConfig:
        return RunConfig.load(self.config_path)

    def write_config(self, config: RunConfig) -> None:
        atomic_write_text(self.config_path, config.to_json())

    # --- weights, optimizer state, latents --------------------------------------------------------------

    def save_weights(self, model: str, module: torch.nn.Module | dict[str, torch.Tensor]) -> None:
        state = module.state_dict() if isinstance(module, torch.nn.Module) else module
        checkpoint.save_tensors(self.weights_path(model), state)

    def load_weights(self, model: str, module: torch.nn.Module) -> None:
        checkpoint.load_weights(module, self.weights_path(model))

    def save_optimizer(self, model: str, optimizer: torch.optim.Optimizer) -> None:
        checkpoint.save_optimizer(self.optimizer_path(model), optimizer)

    def load_optimizer(self, model: str, optimizer: torch.optim.Optimizer) -> bool:
        """Load the saved state into `optimizer`; False if there is none yet."""
        if not self.optimizer_path(model).is_file():
            return False
        checkpoint.load_optimizer(self.optimizer_path(model), optimizer)
        return True

    def save_best_rnn(self, state: dict[str, torch.Tensor]) -> None:
        checkpoint.save_tensors(self.best_rnn_path, state)

    def load_best_rnn(self) -> dict[str, torch.Tensor] | None:
        return checkpoint.load_tensors(self.best_rnn_path) if self.best_rnn_path.is_file() else None

    def save_latents(self, latents: dict[str, torch.Tensor]) -> None:
        checkpoint.save_tensors(self.latents_path, latents)

    def load_latents(self) -> dict[str, torch.Tensor]:
        return checkpoint.load_tensors(self.latents_path)

    def save_memory(self, memory: dict[str, torch.Tensor]) -> None:
        checkpoint.save_tensors(self.memory_path, memory)

    def load_memory(self) -> dict[str, torch.Tensor] | None:
        """The patch memory's tensors; None for a run without one (a vector preset's, or trained before it existed)."""
        return checkpoint.load_tensors(self.memory_path) if self.memory_path.is_file() else None

    # --- training state, log, progress ------------------------------------------------------------------

    def read_state(self) -> dict[str, Any] | None:
        """The last committed training state; None before the first commit."""
        if not self.state_path.is_file():
            return None
        state = read_json(self.state_path)
        if state is None:
            raise DreamvidError(f"{self.state_path} is damaged", "start the run over with --force")
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        """Commit a checkpoint: `state` and the digest of each checkpoint file as it is now."""
        files = {str(path.relative_to(self.path)): self._digest(path)
                 for path in self.checkpoint_paths() if path.is_file()}
        atomic_write_json(self.state_path, {**state, "files": files})

    def _digest(self, path: Path) -> str:
        """The file's SHA-256, hashed again only when the file changed: every write replaces the file (a new
        inode), and the latents, the largest, are written once but committed with every later checkpoint."""
        stat = path.stat()
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._digests.get(path)
        if cached is None or cached[0] != key:
            cached = self._digests[path] = (key, checkpoint.file_digest(path))
        return cached[1]

    def checkpoint_paths(self) -> list[Path]:
        return [self.weights_path("vae"), self.weights_path("rnn"), self.latents_path, self.memory_path,
                self.optimizer_path("vae"), self.optimizer_path("rnn"), self.best_rnn_path]

    def settle_checkpoint(self) -> None:
        """Put the checkpoint files back as the last commit left them: a file written after it (training killed
        between a checkpoint's writes and its commit) is replaced by its previous version, or removed if the
        commit had none. A run from before the state held digests is left as it is."""
        files = (self.read_state() or {}).get("files")
        if not isinstance(files, dict):
            return
        for path in self.checkpoint_paths():
            digest = files.get(str(path.relative_to(self.path)))
            previous = checkpoint.previous_path(path)
            if digest is None:
                path.unlink(missing_ok=True)
            elif not (path.is_file() and checkpoint.file_digest(path) == digest):
                if not (previous.is_file() and checkpoint.file_digest(previous) == digest):
                    raise DreamvidError(f"{path} is neither the last checkpoint's nor the one before",
                                        "start the run over with --force")
                os.replace(previous, path)

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """Every readable record of log.jsonl, in order; a torn last line is skipped."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def write_progress(self, progress: dict[str, Any]) -> None:
        atomic_write_json(self.progress_path, progress)

    def read_progress(self) -> dict[str, Any] | None:
        return read_json(self.progress_path)

    # --- the frame cache ---------------------------------------------------------------------------------

    def frame_cache(self, key: str):
        """The run's frame cache `key` if it is still on disk (evaluation uses it; dreaming never needs it)."""
        from .cache import FrameCache
        directory = self.cache_root / key
        return FrameCache.open(directory) if key and directory.is_dir() else None
