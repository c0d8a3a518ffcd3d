"""The training job, top to bottom: frame cache -> VAE -> latents -> RNN, inside one wall-clock budget.

Every step draws its randomness from a generator seeded by (seed, stage, epoch, step), so a run is
deterministic on CPU and `--resume` after Ctrl-C continues to exactly the result of an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint
from .cache import FrameCache, build_cache
from .config import RunConfig, make_config
from .device import autocast, fast_bf16, place, resolve_device
from .errors import DreamvidError, Interrupted, UsageError
from .files import atomic_write_json
from .rundir import RunDir
from .models import (LatentRNN, PatchDiscriminator, VAE, build_rnn, build_vae, encode_frames, frames_to_tensor,
                     gaussian_kl, tensor_to_frames)
from .video import probe

RUN_FILES = ("config.json", "vae.safetensors", "rnn.safetensors", "latents.safetensors", "log.jsonl",
             "progress.json", "state", "previews")
VAL_SHARE = 0.1
IN_MEMORY_LIMIT = 2 << 30  # frame caches smaller than this are read into RAM once
CHECKPOINT_EVERY_S = 20.0


@dataclass
class Run:
    """A finished (or interrupted) training run on disk."""

    directory: Path
    config: RunConfig

    def __repr__(self) -> str:
        return f"Run({str(self.directory)!r}, preset={self.config.preset!r})"


def train(sources: str | Path | Sequence[str | Path] = (), out: str | Path = "runs/dream", *,
          preset: str | RunConfig = "default", size: int | None = None, fps: float | None = None, crop: str = "center",
          minutes: float | None = None, vae_epochs: int | None = None, rnn_epochs: int | None = None,
          batch_size: int | None = None, device: str = "auto", seed: int = 0, resume: bool = False,
          force: bool = False, progress: bool = True, on_event: Callable[[dict], None] | None = None,
          stop: threading.Event | None = None) -> Run:
    """Train a VAE and an RNN on `sources` into the run folder `out`; see `dreamvid train --help`."""
    out = Path(out)
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if resume:
        config = _config_for_resume(out, sources)
    else:
        if not sources:
            raise UsageError("no source video given", "pass one or more video files: dreamvid train clip.mp4 -o RUN")
        for source in sources:  # bad sources and settings fail before RUN_DIR is touched, even with --force
            probe(source)
        config = make_config(preset, size=size, fps=fps, crop=crop, minutes=minutes, vae_epochs=vae_epochs,
                             rnn_epochs=rnn_epochs, batch_size=batch_size, seed=seed)
        _prepare_run_dir(out, force)
        config.data.sources = [str(Path(s).resolve()) for s in sources]
    job = _Job(out, config, resolve_device(device), progress, on_event, stop)
    return job.run(resume)


def _prepare_run_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", "choose another -o")
    if (out / "config.json").exists():
        if not force:
            raise UsageError(f"{out} already holds a run",
                             "pass --resume to continue it, --force to start it over, or choose another -o")
        for name in RUN_FILES:  # only our own files: anything else the user keeps there stays
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    try:
        (out / "previews").mkdir(parents=True, exist_ok=True)
        (out / "state").mkdir(exist_ok=True)
    except OSError as exc:
        raise DreamvidError(f"cannot create run folder {out} ({exc.strerror})", "choose a writable -o") from None


def _config_for_resume(out: Path, sources: list) -> RunConfig:
    if not (out / "config.json").is_file():
        raise UsageError(f"{out} is not a dreamvid run, nothing to resume", "drop --resume to start a new run")
    config = RunConfig.load(out / "config.json")
    if sources and [str(Path(s).resolve()) for s in sources] != config.data.sources:
        raise UsageError(f"{out} was trained on other sources", "resume without SOURCE, or train a new run")
    return config


def step_generator(seed: int, *keys: Any, device: torch.device | str = "cpu") -> torch.Generator:
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def minimum_frames(seq_len: int) -> int:
    """Fewest frames a source needs: a full training window plus a held-out tail of at least two frames."""
    n = seq_len + 1
    while n - math.ceil(n * VAL_SHARE) < seq_len + 1 or math.ceil(n * VAL_SHARE) < 2:
        n += 1
    return n


class _StopRequest:
    """Turns Ctrl-C (and an optional Event) into a flag checked between steps, so a save is never torn."""

    def __init__(self, event: threading.Event | None):
        self.event = event or threading.Event()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda *_: self.event.set())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def __bool__(self) -> bool:
        return self.event.is_set()


class _Job:
    def __init__(self, out: Path, config: RunConfig, device: torch.device, progress: bool,
                 on_event: Callable[[dict], None] | None, stop: threading.Event | None):
        self.out, self.config, self.device = out, config, device
        self.progress, self.on_event = progress, on_event
        self.stop = _StopRequest(stop)
        self.seed = config.train.seed
        self.use_bf16 = config.train.bf16 and fast_bf16(device)
        budget = config.train.minutes
        if budget is None and config.train.vae_epochs is None and config.train.rnn_epochs is None:
            budget = config.train.default_minutes
        self.budget_s = None if budget is None else budget * 60
        self.state: dict[str, Any] = {"stage": "vae", "epoch": 0, "step": 0, "elapsed": 0.0}
        self._last_progress_write = 0.0
        self._last_checkpoint = time.monotonic()

    # --- the job -------------------------------------------------------------------------------------------

    def run(self, resume: bool) -> Run:
        torch.manual_seed(self.seed)
        if resume:
            self.state = json.loads((self.out / "state" / "train_state.json").read_text()) \
                if (self.out / "state" / "train_state.json").is_file() else self.state
        self.cache = self._frame_cache()
        self.config.data.fps = self.cache.fps
        RunDir(self.out).write_config(self.config)
        self.vae = place(build_vae(self.config.vae), self.device)
        self.rnn = build_rnn(self.config.rnn, self.config.vae.z_dim).to(self.device)
        self.started = time.monotonic() - self.state["elapsed"]
        self._save_state()  # from here on the folder is a resumable run, even before the first checkpoint
        try:
            with self.stop.installed():
                if self.state["stage"] == "vae":
                    self._train_vae(resume)
                    self._advance("encode")
                if self.state["stage"] == "encode":
                    self._encode_latents()
                    self._advance("rnn")
                if self.state["stage"] == "rnn":
                    self._train_rnn(resume)
                    self._advance("done")
        except Interrupted:
            self._write_progress(force=True, interrupted=True)
            raise
        self._finish()
        return Run(self.out, self.config)

    def _frame_cache(self) -> FrameCache:
        data = self.config.data
        missing = [s for s in data.sources if not Path(s).exists()]
        if missing:
            raise UsageError(f"source {missing[0]} does not exist", "check the path")
        cache = build_cache(data.sources, self.out / "cache", size=data.size, fps=data.fps, crop=data.crop,
                            progress=self.progress, warn=self._warn)
        need = minimum_frames(self.config.rnn.seq_len)
        for sequence in cache.sequences:
            count = sequence.stop - sequence.start
            if count < need:
                raise DreamvidError(
                    f"{sequence.source} gives {count} frames at {cache.fps:g} fps; training needs at least {need} "
                    f"(a {self.config.rnn.seq_len}-frame RNN window plus a 10% held-out tail)",
                    "use a longer clip or a higher --fps")
        self.config.data.cache_key = cache.directory.name
        return cache

    def _warn(self, message: str) -> None:
        from tqdm import tqdm
        tqdm.write(f"dreamvid: warning: {message}", file=sys.stderr)  # stderr, as errors are

    def _advance(self, stage: str) -> None:
        self.state.update(stage=stage, epoch=0, step=0)
        self._save_state()

    def _finish(self) -> None:
        from .plots import plot_losses
        plot_losses(self.out / "log.jsonl", self.out / "previews" / "losses.png")
        self._write_progress(force=True)

    # --- VAE ----------------------------------------------------------------------------------------------

    def _train_vae(self, resume: bool) -> None:
        vae, config = self.vae, self.config
        self.vae_optimizer = torch.optim.Adam(vae.parameters(), lr=config.vae.lr)
        self.critic = self.critic_optimizer = None
        if config.vae.adversarial_weight > 0:
            self.critic = place(PatchDiscriminator(config.vae.critic_channels), self.device)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.vae.lr, betas=(0.5, 0.9))
        if resume and (self.out / "state" / "vae_optimizer.safetensors").is_file():
            checkpoint.load_weights(vae, self.out / "vae.safetensors")
            checkpoint.load_optimizer(self.out / "state" / "vae_optimizer.safetensors", self.vae_optimizer)
            if self.critic is not None:
                checkpoint.load_weights(self.critic, self.out / "state" / "critic.safetensors")
                checkpoint.load_optimizer(self.out / "state" / "critic_optimizer.safetensors", self.critic_optimizer)
        frames = self._frames_tensor()
        train_index = _range_indices(self.cache.split_ranges("train"))
        val_index = _range_indices(self.cache.split_ranges("val"))
        batch = min(config.train.batch_size, len(train_index))
        steps_per_epoch = max(1, len(train_index) // batch)
        epochs = config.train.vae_epochs
        deadline = None if self.budget_s is None else self.budget_s * config.train.vae_share
        meter = self._meter("vae", epochs, steps_per_epoch, deadline)
        vae.train()
        while not self._stage_over(epochs, deadline):
            epoch, start = self.state["epoch"], self.state["step"]
            order = torch.randperm(len(train_index), generator=step_generator(self.seed, "vae", epoch))
            for step in range(start, steps_per_epoch):
                if self.stop:
                    self._interrupt("vae")
                if deadline is not None and self._elapsed() >= deadline:
                    break
                generator = step_generator(self.seed, "vae", epoch, step, device=self.device)
                if config.vae.lr_schedule == "cosine":
                    for group in self.vae_optimizer.param_groups:
                        group["lr"] = config.vae.lr * 0.5 * (1 + math.cos(math.pi * meter.fraction()))
                rows = train_index[order[step * batch:(step + 1) * batch].numpy()]
                images = self._batch(frames, rows)
                fraction = meter.fraction()
                if config.vae.decoder_tuning and fraction >= 1 - config.vae.decoder_tuning:
                    loss, kl = decoder_train_step(vae, self.vae_optimizer, images, self.use_bf16)
                else:
                    adversarial = self.critic is not None and fraction >= config.vae.adversarial_start
                    kl_scale = min(1.0, fraction / config.vae.kl_anneal) if config.vae.kl_anneal else 1.0
                    loss, kl = vae_train_step(vae, self.vae_optimizer, images, generator, self.use_bf16,
                                              self.critic if adversarial else None, self.critic_optimizer,
                                              config.vae.adversarial_weight, kl_scale)
                self.state["step"] = step + 1
                meter(loss=loss / images[0].numel(), kl=kl)
            else:
                self._end_vae_epoch(frames, val_index, meter)
                continue
            self._log(stage="vae", epoch=self.state["epoch"], partial=True, train_loss=meter.last.get("loss"),
                      val_loss=self._vae_validation(frames, val_index))
            break
        self._save_vae()
        self._write_reconstruction_preview(frames, val_index)
        meter.close()

    def _end_vae_epoch(self, frames, val_index, meter) -> None:
        val = self._vae_validation(frames, val_index)
        self._log(stage="vae", epoch=self.state["epoch"], train_loss=meter.last.get("loss"), val_loss=val)
        self.state.update(epoch=self.state["epoch"] + 1, step=0)
        if self._checkpoint_due():
            self._save_vae()
            self._write_reconstruction_preview(frames, val_index)

    @torch.no_grad()
    def _vae_validation(self, frames, val_index: np.ndarray) -> float:
        self.vae.eval()
        rows = val_index[np.linspace(0, len(val_index) - 1, min(256, len(val_index))).astype(int)]
        images = self._batch(frames, rows)
        with self._autocast():
            logits, mu, logvar = self.vae(images, step_generator(self.seed, "vae-val", device=self.device))
        loss = self.vae.loss(images, logits, mu, logvar)[0].item() / images[0].numel()
        self.vae.train()
        return loss

    def _save_vae(self) -> None:
        checkpoint.save_tensors(self.out / "vae.safetensors", self.vae.state_dict())
        checkpoint.save_optimizer(self.out / "state" / "vae_optimizer.safetensors", self.vae_optimizer)
        if self.critic is not None:
            checkpoint.save_tensors(self.out / "state" / "critic.safetensors", self.critic.state_dict())
            checkpoint.save_optimizer(self.out / "state" / "critic_optimizer.safetensors", self.critic_optimizer)
        self._save_state()

    # --- latents ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _encode_latents(self) -> None:
        checkpoint.load_weights(self.vae, self.out / "vae.safetensors")
        self.vae.eval()
        mu, logvar = encode_frames(self.vae, self.cache.frames, self.device, self.use_bf16, self.progress)
        # Sequence and held-out bounds travel with the latents, so dreaming never needs the frame cache.
        bounds = {part: torch.tensor([(s.start, s.stop) for s in self.cache.sequences] if part == "sequences"
                                     else self.cache.split_ranges(part), dtype=torch.int64).view(-1, 2)
                  for part in ("sequences", "train", "val")}
        checkpoint.save_tensors(self.out / "latents.safetensors", {"mu": mu, "logvar": logvar, **bounds})

    # --- RNN ----------------------------------------------------------------------------------------------

    def _train_rnn(self, resume: bool) -> None:
        rnn, config = self.rnn, self.config
        self.rnn_optimizer = optimizer = torch.optim.Adam(rnn.parameters(), lr=config.rnn.lr)
        if resume and (self.out / "state" / "rnn_optimizer.safetensors").is_file():
            checkpoint.load_weights(rnn, self.out / "rnn.safetensors")
            checkpoint.load_optimizer(self.out / "state" / "rnn_optimizer.safetensors", optimizer)
        self.best_rnn = None
        if resume and (self.out / "state" / "rnn_best.safetensors").is_file():
            self.best_rnn = checkpoint.load_tensors(self.out / "state" / "rnn_best.safetensors")
        latents = checkpoint.load_tensors(self.out / "latents.safetensors")
        mu, logvar = latents["mu"].to(self.device), latents["logvar"].to(self.device)
        checkpoint.load_weights(self.vae, self.out / "vae.safetensors")
        seq_len, batch = config.rnn.seq_len, config.train.rnn_batch_size
        train_ranges = self.cache.split_ranges("train")
        windows_per_epoch = len(_window_starts(train_ranges, seq_len, 0))
        steps_per_epoch = max(1, math.ceil(windows_per_epoch / batch))
        epochs = config.train.rnn_epochs
        meter = self._meter("rnn", epochs, steps_per_epoch, self.budget_s)
        rnn.train()
        while not self._stage_over(epochs, self.budget_s):
            epoch, start = self.state["epoch"], self.state["step"]
            epoch_generator = step_generator(self.seed, "rnn", epoch)
            offset = int(torch.randint(seq_len, (1,), generator=epoch_generator))
            starts = _window_starts(train_ranges, seq_len, offset)
            starts = starts[torch.randperm(len(starts), generator=epoch_generator).numpy()]
            z = mu if config.rnn.latents == "means" else mu + torch.exp(0.5 * logvar) * torch.randn(
                mu.shape, generator=step_generator(self.seed, "rnn-z", epoch, device=self.device), device=self.device)
            for group in optimizer.param_groups:
                group["lr"] = config.rnn.lr * config.rnn.lr_decay ** epoch
            steps = math.ceil(len(starts) / batch)
            for step in range(start, steps):
                if self.stop:
                    self._interrupt("rnn")
                if self.budget_s is not None and self._elapsed() >= self.budget_s:
                    break
                rows = torch.as_tensor(starts[step * batch:(step + 1) * batch], device=self.device)
                window = z[rows[:, None] + torch.arange(seq_len + 1, device=self.device)]
                inputs, targets = window[:, :-1], window[:, 1:]
                needs_random = config.rnn.input_noise > 0 or config.rnn.open_loop > 0 or config.rnn.dropout > 0
                generator = step_generator(self.seed, "rnn", epoch, step, device=self.device) if needs_random else None
                if config.rnn.input_noise > 0:
                    inputs = inputs + config.rnn.input_noise * torch.randn(
                        inputs.shape, generator=generator, device=self.device)
                if config.rnn.open_loop > 0:
                    inputs = with_own_samples(rnn, inputs, config.rnn.open_loop, generator)
                loss = rnn_train_step(rnn, optimizer, inputs, targets, generator)
                self.state["step"] = step + 1
                meter(loss=loss)
            else:
                self._end_rnn_epoch(epoch, meter, mu)
                self.state.update(epoch=epoch + 1, step=0)
                if self._checkpoint_due():
                    self._save_rnn()
                    self._write_dream_preview(mu)
                continue
            self._end_rnn_epoch(epoch, meter, mu, partial=True)
            break
        if self.best_rnn is not None:
            rnn.load_state_dict(self.best_rnn)
        self._save_rnn()
        self._write_dream_preview(mu)
        meter.close()

    def _end_rnn_epoch(self, epoch: int, meter: "_Meter", mu: torch.Tensor, partial: bool = False) -> None:
        val = self._rnn_validation(mu)
        self._log(stage="rnn", epoch=epoch, **({"partial": True} if partial else {}),
                  train_loss=meter.last.get("loss"), val_loss=val)
        # On short clips the RNN's held-out NLL bottoms out within seconds, then it memorises the clip.
        if self.config.rnn.keep_best and val < self.state.get("rnn_best_val", math.inf):
            self.state["rnn_best_val"] = val
            self.best_rnn = {k: v.detach().clone() for k, v in self.rnn.state_dict().items()}

    @torch.no_grad()
    def _rnn_validation(self, mu: torch.Tensor) -> float:
        """Teacher-forced NLL per step on each held-out tail, the LSTM warmed up on the frames before it."""
        self.rnn.eval()
        total, count = 0.0, 0
        sequence_starts = {s.stop: s.start for s in self.cache.sequences}
        for (start, stop) in self.cache.split_ranges("val"):
            first = max(sequence_starts.get(stop, start), start - self.config.rnn.seq_len)
            params, _ = self.rnn(mu[first:stop - 1].unsqueeze(0))
            nll = self.rnn.nll(params, mu[first + 1:stop].unsqueeze(0))[0, start - first - 1:]
            total, count = total + nll.sum().item(), count + nll.numel()
        self.rnn.train()
        return total / max(count, 1)

    def _save_rnn(self) -> None:
        checkpoint.save_tensors(self.out / "rnn.safetensors", self.rnn.state_dict())
        checkpoint.save_optimizer(self.out / "state" / "rnn_optimizer.safetensors", self.rnn_optimizer)
        if self.best_rnn is not None:
            checkpoint.save_tensors(self.out / "state" / "rnn_best.safetensors", self.best_rnn)
        self._save_state()

    # --- shared machinery ---------------------------------------------------------------------------------

    def _frames_tensor(self) -> np.ndarray | torch.Tensor:
        frames = self.cache.frames
        if frames.nbytes < IN_MEMORY_LIMIT:
            return torch.from_numpy(np.array(frames)).to(self.device)
        return frames

    def _batch(self, frames, rows: np.ndarray) -> torch.Tensor:
        rows = np.sort(rows)
        picked = frames[torch.as_tensor(rows, device=frames.device)] if torch.is_tensor(frames) else frames[rows]
        images = frames_to_tensor(picked, self.device)
        if self.config.vae.kind == "conv" and self.device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _autocast(self):
        return autocast(self.device, self.use_bf16)

    def _checkpoint_due(self) -> bool:
        """Checkpoints and previews between epochs at most every CHECKPOINT_EVERY_S: an RNN epoch can be a few
        steps, and saving after each would cost more than training. Stage ends and Ctrl-C always save."""
        now = time.monotonic()
        if now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return False
        self._last_checkpoint = now
        return True

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _stage_over(self, epochs: int | None, deadline: float | None) -> bool:
        if epochs is not None and self.state["epoch"] >= epochs:
            return True
        return deadline is not None and self._elapsed() >= deadline

    def _interrupt(self, stage: str) -> None:
        (self._save_vae if stage == "vae" else self._save_rnn)()
        raise Interrupted(f"training interrupted during the {stage.upper()} stage; progress saved in {self.out}",
                          f"resume with: dreamvid train -o {self.out} --resume")

    def _save_state(self) -> None:
        self.state["elapsed"] = self._elapsed() if hasattr(self, "started") else 0.0
        atomic_write_json(self.out / "state" / "train_state.json", self.state)

    def _log(self, **record: Any) -> None:
        record["elapsed_s"] = round(self._elapsed(), 2)
        with open(self.out / "log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")

    def _meter(self, stage: str, epochs: int | None, steps_per_epoch: int, deadline: float | None) -> "_Meter":
        return _Meter(self, stage, epochs, steps_per_epoch, deadline)

    def _write_progress(self, force: bool = False, interrupted: bool = False, **extra: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress_write < 1.0:
            return
        self._last_progress_write = now
        status = {"stage": self.state["stage"], "epoch": self.state["epoch"], "step": self.state["step"],
                  "elapsed_s": round(self._elapsed(), 1) if hasattr(self, "started") else 0.0,
                  "finished": self.state["stage"] == "done", "interrupted": interrupted, "error": None, **extra}
        atomic_write_json(self.out / "progress.json", status)

    def _write_reconstruction_preview(self, frames, val_index: np.ndarray) -> None:
        from .plots import save_image_grid
        rows = val_index[np.linspace(0, len(val_index) - 1, min(8, len(val_index))).astype(int)]
        images = self._batch(frames, rows)
        with torch.no_grad():
            self.vae.eval()
            reconstruction = self.vae.decode(self.vae.encode(images)[0])
            self.vae.train()
        save_image_grid(self.out / "previews" / "reconstruction.png",
                        [tensor_to_frames(images), tensor_to_frames(reconstruction)])

    @torch.no_grad()
    def _write_dream_preview(self, mu: torch.Tensor) -> None:
        from .plots import save_image_grid
        self.rnn.eval()
        self.vae.eval()
        start, stop = self.cache.split_ranges("val")[0]
        seed_latent = mu[start:start + 1]
        dreamed, _, _ = self.rnn.rollout(seed_latent, None, 16, self.config.rnn.temperature,
                                         step_generator(self.seed, "preview", device=self.device),
                                         self.config.rnn.decode_spread)
        frames = tensor_to_frames(self.vae.decode(dreamed[0]))
        save_image_grid(self.out / "previews" / "dream.png", [frames[:8], frames[8:]])
        self.rnn.train()
        self.vae.train()


def vae_train_step(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                   generator: torch.Generator | None, bf16: bool, critic: PatchDiscriminator | None = None,
                   critic_optimizer: torch.optim.Optimizer | None = None,
                   adversarial_weight: float = 0.0, kl_scale: float = 1.0) -> tuple[float, float]:
    """One optimizer step on a batch of images (and one for the critic, if any); returns (loss, kl).
    `kl_scale` multiplies the KL weight (KL annealing).

    With a critic, the decoder also minimises the critic's hinge score of its reconstructions, weighted per
    pixel so the term keeps its meaning at every frame size; the critic then learns real from reconstructed."""
    with autocast(images.device, bf16):
        logits, mu, logvar = vae(images, generator)
    loss, _, kl = vae.loss(images, logits, mu, logvar, kl_scale)
    total = loss
    if critic is not None:
        fake = torch.sigmoid(logits.float())
        with autocast(images.device, bf16):
            fooling = -critic(fake).float().mean()
        total = loss + adversarial_weight * images[0].numel() * fooling
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    if critic is not None:
        with autocast(images.device, bf16):
            real_score, fake_score = critic(images).float(), critic(fake.detach()).float()
        critic_loss = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
        critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_optimizer.step()
    return loss.item(), kl.item()


def decoder_train_step(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                       bf16: bool) -> tuple[float, float]:
    """One optimizer step of the decoder alone, drawing each image from its latent mean; returns (loss, kl).

    A decoder trained on posterior samples learns to draw the average of the frames near each latent, which is
    blur; the RNN's latents never change here, since the encoder is left as it is."""
    with torch.no_grad(), autocast(images.device, bf16):
        mu, logvar = vae.encode(images)
    with autocast(images.device, bf16):
        logits = vae.decode_logits(mu)
    loss = vae.reconstruction_loss(images, logits)
    optimizer.zero_grad(set_to_none=True)  # the encoder's gradients stay None, so Adam leaves it alone
    loss.backward()
    optimizer.step()
    return loss.item(), gaussian_kl(mu, logvar).sum(1).mean().item()


@torch.no_grad()
def with_own_samples(rnn: LatentRNN, inputs: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Parallel scheduled sampling (Duckworth et al. 2019): replace about `share` of the input latents (never
    a window's first) with the RNN's own sample for that step, predicted from the true latents before it, so
    it learns to continue from its own outputs as it must when dreaming."""
    rnn.eval()
    own = rnn.sample(rnn(inputs)[0], 1.0, generator)  # own[:, t] predicts inputs[:, t + 1]
    rnn.train()
    replace = torch.rand(inputs.shape[:2], generator=generator, device=inputs.device) < share
    replace[:, 0] = False
    mixed = inputs.clone()
    mixed[:, 1:] = torch.where(replace[:, 1:, None], own[:, :-1], inputs[:, 1:])
    return mixed


def rnn_train_step(rnn: LatentRNN, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                   targets: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """One optimizer step on (B, T, z) windows; returns the mean NLL per step. `generator` draws the
    dropout mask, if any."""
    params, _ = rnn(inputs, generator=generator)
    loss = rnn.nll(params, targets).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(rnn.parameters(), rnn.config.grad_clip)
    optimizer.step()
    return loss.item()


class _Meter:
    """A stage's progress bar, progress.json and event callback, driven by steps or by the clock."""

    def __init__(self, job: _Job, stage: str, epochs: int | None, steps_per_epoch: int, deadline: float | None):
        from tqdm import tqdm
        self.job, self.stage, self.epochs, self.steps_per_epoch = job, stage, epochs, steps_per_epoch
        self.deadline = deadline
        self.stage_started = job._elapsed()
        self.last: dict[str, float] = {}
        self.bar = tqdm(total=1000, desc=f"{stage.upper():>3}", disable=not job.progress, leave=True,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
        self.bar.update(round(1000 * self.fraction()))

    def fraction(self) -> float:
        state = self.job.state
        by_steps = 0.0
        if self.epochs:
            by_steps = (state["epoch"] * self.steps_per_epoch + state["step"]) / (self.epochs * self.steps_per_epoch)
        by_time = 0.0
        if self.deadline is not None:
            start = self.job.budget_s * self.job.config.train.vae_share if self.stage == "rnn" else 0.0
            by_time = (self.job._elapsed() - start) / max(self.deadline - start, 1e-9)
        return min(1.0, max(by_steps, by_time))

    def __call__(self, **values: float) -> None:
        self.last = values
        fraction = self.fraction()
        self.bar.update(max(0, round(1000 * fraction) - self.bar.n))
        self.bar.set_postfix_str(f"epoch {self.job.state['epoch']} " +
                                 " ".join(f"{k} {v:.4g}" for k, v in values.items()), refresh=False)
        spent = self.job._elapsed() - self.stage_started
        eta = spent * (1 - fraction) / fraction if fraction > 0.01 else None
        event = {"stage": self.stage, "epoch": self.job.state["epoch"], "step": self.job.state["step"],
                 "fraction": round(fraction, 4), "eta_s": None if eta is None else round(eta, 1), **values}
        self.job._write_progress(fraction=event["fraction"], eta_s=event["eta_s"], loss=values.get("loss"))
        if self.job.on_event:
            self.job.on_event(event)

    def close(self) -> None:
        self.bar.close()


def _range_indices(ranges: list[tuple[int, int]]) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)


def _window_starts(ranges: list[tuple[int, int]], seq_len: int, offset: int) -> np.ndarray:
    """Starts of (seq_len + 1)-frame windows inside each range, so no window crosses a source boundary;
    `offset` shifts the tiling each epoch so every transition is trained on."""
    starts: list[int] = []
    for a, b in ranges:
        last = b - seq_len - 1
        if last >= a:
            starts.extend(range(a + min(offset % seq_len, last - a), last + 1, seq_len))
    return np.asarray(starts, dtype=np.int64)
