"""Dreaming: sample the RNN autoregressively, decode through the VAE, stream frames out.

Nothing here holds a whole dream: latents are generated and decoded a batch at a time, so a 100,000-frame
dream costs the memory of one batch. Only the run folder is read, never the source video.
"""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .config import BACKENDS, RunConfig
from .device import autocast, convolutional, core_for_a_worker, fast_bf16, place, resolve_device
from .errors import DreamvidError, UsageError
from .graphs import OnnxDreaming, TracedStep, require_onnx
from .models import DreamModel, VAE, build_rnn, build_vae, encode_frames, tensor_to_frames
from .models.patch_memory import PatchMemory
from .rundir import RunDir

DECODE_BATCH = 64


def load(run_dir: str | Path, device: str = "auto", backend: str = "torch") -> "Dreamer":
    """Open a trained run folder for dreaming. Backend "onnx" steps and decodes through ONNX Runtime on the CPU
    (docs/benchmarks.md: faster than torch there); it traces the run's graphs first, a few seconds."""
    return Dreamer.from_pretrained(run_dir, device, backend)


def _patch_memory(run: RunDir, vae: VAE) -> PatchMemory | None:
    """The run's patch memory, if it has one that fits its VAE."""
    state = run.load_memory()
    if state is None:
        return None
    try:
        memory = PatchMemory.from_state_dict(state)
    except ValueError as error:
        raise DreamvidError(f"{run.memory_path} is damaged: {error}", "delete it to dream without it, or train the "
                            "run again") from error
    if memory.code_count != getattr(getattr(vae, "quantise", None), "codes", None):
        raise DreamvidError(f"{run.memory_path} does not fit config.json", "delete it, or train the run again")
    return memory


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise UsageError(f"temperature must be positive, got {temperature}", "use e.g. --temperature 1.0")
    return float(temperature)


class Dreamer:
    """A trained VAE + RNN pair and the latents of its source, ready to dream."""

    def __init__(self, run_dir: Path, config: RunConfig, vae: VAE, rnn: DreamModel,
                 latents: dict[str, torch.Tensor], device: torch.device, memory: PatchMemory | None = None):
        self.run_dir, self.config, self.vae, self.rnn, self.device = run_dir, config, vae, rnn, device
        self.latents, self.memory = latents, memory
        self.bf16 = config.train.bf16 and fast_bf16(device)
        self.backend = "torch"
        self._onnx = None
        self._traced = (TracedStep(rnn, config.rnn.decode_spread, self._example_latent())
                        if device.type == "cpu" and convolutional(rnn) else None)

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, device: str = "auto", backend: str = "torch") -> "Dreamer":
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")
        if backend == "onnx" and device not in ("auto", "cpu"):
            raise UsageError("the onnx backend dreams on the CPU", "drop --device, or use --backend torch")
        run = RunDir(run_dir).require_run()
        config = run.read_config()
        run.require_trained()
        torch_device = resolve_device(device)
        vae = build_vae(config.vae)
        rnn = build_rnn(config.rnn, vae)
        run.load_weights("vae", vae)
        run.load_weights("rnn", rnn)
        latents = run.load_latents()
        if "mu" not in latents or tuple(latents["mu"].shape[1:]) != vae.latent_shape:
            raise DreamvidError(f"{run.latents_path} does not fit config.json", "train the run again")
        if backend == "onnx":
            torch_device = torch.device("cpu")
        dreamer = cls(run.path, config, place(vae, torch_device).eval(), place(rnn, torch_device).eval(), latents,
                      torch_device, _patch_memory(run, vae))
        if backend == "onnx":
            require_onnx()
            dreamer.backend = backend
        return dreamer

    # --- properties a caller needs to place frames in time and space -------------------------------------

    @property
    def fps(self) -> float:
        return float(self.config.data.fps or 30)

    @property
    def size(self) -> int:
        return self.config.vae.size

    @property
    def onnx(self):
        """With the onnx backend, the run's graphs in ONNX Runtime (an OnnxDreaming), traced on first use (a few
        seconds); None with torch."""
        if self.backend == "onnx" and self._onnx is None:
            self._onnx = OnnxDreaming(self.vae, self.rnn, self.config.rnn.decode_spread, self._example_latent())
        return self._onnx

    @property
    def stepper(self) -> OnnxDreaming | TracedStep | DreamModel:
        """What steps a dream (its `rollout`): ONNX Runtime with the onnx backend; on the CPU, the map model's step
        traced by TorchScript (`graphs.TracedStep`: the same latents, faster); else the model itself."""
        return self.onnx or self._traced or self.rnn

    def _example_latent(self) -> torch.Tensor:
        """A source latent (1, *latent_shape) to trace the graphs on."""
        return self.context_before(self.random_frame_index(random.Random(0)))[-1:]

    @property
    def cache(self):
        """The run's frame cache when it is still on disk (evaluation uses it; dreaming never needs it)."""
        return RunDir(self.run_dir).frame_cache(self.config.data.cache_key)

    # --- the two halves of the VAE -------------------------------------------------------------------------

    def encode(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, S, S, 3) frames -> (mu, logvar), each (N, *latent_shape), on the CPU."""
        return encode_frames(self.vae, frames, self.device, self.bf16)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        """Latents (N, *latent_shape) -> uint8 (N, S, S, 3) frames, redrawn where the patch memory knows better."""
        if self.onnx is not None:
            frames = self.onnx.decode(z)
        else:
            with autocast(self.device, self.bf16):
                frames = tensor_to_frames(self.vae.decode(z.to(self.device)))
        if self.memory is not None:
            frames = self.memory.apply(self.vae.quantise.code(z.cpu()).numpy(), frames)
        return frames

    @torch.no_grad()
    def reproject(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, *latent_shape) -> the latent means of their decoded images: back onto what the VAE draws."""
        with autocast(self.device, self.bf16):
            return self.vae.encode(self.vae.decode(z))[0].float()

    # --- dreaming ------------------------------------------------------------------------------------------

    def session(self, temperature: float | None = None, seed: int | None = None, frame_index: int | None = None,
                prime: str | Path | None = None, reproject: bool = False) -> "DreamSession":
        """An endless dream whose temperature and seed can change while it runs. `reproject` passes every
        dreamed latent through decode -> encode before it is fed back: on live-action footage steadier and
        more realistic frames, on games a dream that stops moving (docs/results.md); it costs a VAE decode
        and encode per frame."""
        if reproject and self.backend == "onnx":
            raise UsageError("re-projection runs only with the torch backend", "drop --reproject or --backend onnx")
        return DreamSession(self, self.config.rnn.temperature if temperature is None else temperature,
                            seed, frame_index, self.prime_latents(prime) if prime is not None else None, reproject)

    def stream(self, temperature: float | None = None, seed: int | None = None, frame_index: int | None = None,
               prime: str | Path | None = None, reproject: bool = False) -> Iterator[np.ndarray]:
        """Endless uint8 (S, S, 3) frames."""
        yield from self.session(temperature, seed, frame_index, prime, reproject)

    def dream(self, frames: int | None = None, seconds: float | None = None, temperature: float | None = None,
              seed: int = 0, prime: str | Path | None = None, prime_frame: int | None = None,
              reproject: bool = False) -> "Dream":
        """A dream of a fixed length (frames, or seconds at the run's fps), generated lazily."""
        if frames is not None and seconds is not None:
            raise UsageError("give either frames or seconds, not both")
        if seconds is not None:
            if not seconds > 0:
                raise UsageError(f"seconds must be positive, got {seconds}")
            frames = max(1, round(seconds * self.fps))
        frames = round(10 * self.fps) if frames is None else frames
        if frames < 1:
            raise UsageError(f"the number of frames must be at least 1, got {frames}")
        session = self.session(temperature, seed, prime_frame, prime, reproject)
        return Dream(self, session, int(frames))

    def prime_latents(self, clip: str | Path) -> torch.Tensor:
        """Latent means of a priming clip, read at the run's size, frame rate and crop."""
        from .video import read_frames
        data = self.config.data
        frames = np.stack(list(read_frames(clip, size=data.size, fps=self.fps, crop=data.crop)))
        return self.encode(frames)[0]

    def random_frame_index(self, rng: random.Random) -> int:
        """A random held-out frame: dreams start from footage the models did not train on."""
        ranges = self.latents.get("val", torch.zeros(0, 2, dtype=torch.int64)).tolist()
        ranges = [r for r in ranges if r[1] > r[0]] or [[0, len(self.latents["mu"])]]
        start, stop = rng.choice(ranges)
        return rng.randrange(start, stop)

    def context_before(self, frame_index: int) -> torch.Tensor:
        """Latents from the start of frame_index's source (at most one RNN window back) up to and with it."""
        count = len(self.latents["mu"])
        if not 0 <= frame_index < count:
            raise UsageError(f"frame {frame_index} is outside the run's {count} source frames",
                             f"choose a frame from 0 to {count - 1}")
        first = 0
        for start, stop in self.latents.get("sequences", torch.tensor([[0, count]])).tolist():
            if start <= frame_index < stop:
                first = start
        first = max(first, frame_index - self.config.rnn.seq_len)
        return self.latents["mu"][first:frame_index + 1]


class DreamSession:
    """The state of one running dream: LSTM state, last latent, random generator, temperature, re-projection."""

    def __init__(self, dreamer: Dreamer, temperature: float, seed: int | None, frame_index: int | None,
                 prime: torch.Tensor | None = None, reproject: bool = False):
        self.dreamer = dreamer
        self.temperature = temperature
        self.reproject = reproject
        self.reseed(seed, frame_index, prime)

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = _check_temperature(value)

    @torch.no_grad()
    def reseed(self, seed: int | None = None, frame_index: int | None = None,
               prime: torch.Tensor | None = None) -> None:
        """Restart the dream: from `prime` latents, a chosen source frame, or a random held-out frame."""
        dreamer = self.dreamer
        self.seed = random.randrange(2 ** 31) if seed is None else seed
        self.generator = torch.Generator(device=dreamer.device).manual_seed(self.seed)
        if prime is None:
            index = dreamer.random_frame_index(random.Random(self.seed)) if frame_index is None else frame_index
            prime = dreamer.context_before(index)
            self.frame_index = index
        context = prime.to(dreamer.device).unsqueeze(0)
        _, self.state = dreamer.rnn(context[:, :-1]) if context.shape[1] > 1 else (None, None)
        self.z = context[:, -1]

    @torch.no_grad()
    def next_latents(self, n: int) -> torch.Tensor:
        """The latents of the next n frames to decode (see RNNConfig.decode_spread)."""
        dreamer = self.dreamer
        shown, self.z, self.state = dreamer.stepper.rollout(self.z, self.state, n, self.temperature, self.generator,
                                                            dreamer.config.rnn.decode_spread,
                                                            dreamer.reproject if self.reproject else None)
        return shown[0]

    def next_frames(self, n: int) -> np.ndarray:
        """The next n dreamed frames, uint8 (n, S, S, 3)."""
        return self.dreamer.decode(self.next_latents(n))

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield from self.next_frames(DECODE_BATCH // 4)


class Dream:
    """A fixed-length dream, generated as it is iterated or saved."""

    def __init__(self, dreamer: Dreamer, session: DreamSession, frames: int):
        self.dreamer, self.session, self.frames = dreamer, session, frames

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches():
            yield from batch

    def batches(self, size: int = DECODE_BATCH) -> Iterator[np.ndarray]:
        for latents in self.latent_batches(size):
            yield self.dreamer.decode(latents)

    def latent_batches(self, size: int = DECODE_BATCH) -> Iterator[torch.Tensor]:
        left = self.frames
        while left > 0:
            latents = self.session.next_latents(min(size, left))
            left -= len(latents)
            yield latents

    def save(self, path: str | Path, fps: float | None = None, upscale: int | None = None, force: bool = False,
             progress: bool = True) -> Path:
        """Encode the dream to .mp4 / .webm / .gif or a folder of PNGs, streaming."""
        from tqdm import tqdm
        from .video import VideoWriter, default_upscale
        if fps is not None and not fps > 0:
            raise UsageError(f"fps must be positive, got {fps}")
        if upscale is not None and upscale < 1:
            raise UsageError(f"upscale must be at least 1, got {upscale}")
        upscale = default_upscale(self.dreamer.size) if upscale is None else upscale
        # The dream model steps here while a worker decodes the batch before and queues it for the encoder's own
        # thread; torch gets one thread fewer, so that each has a core (docs/benchmarks.md).
        with core_for_a_worker(), VideoWriter(path, fps or self.dreamer.fps, upscale=upscale, force=force) as writer, \
                tqdm(total=self.frames, desc="DREAM", unit="frame", disable=not progress) as bar, \
                ThreadPoolExecutor(1, thread_name_prefix="dreamvid-decoder") as decoder:
            pending = None
            for latents in self.latent_batches():
                if pending is not None:
                    bar.update(pending.result())
                pending = decoder.submit(self._decode_into, writer, latents)
            bar.update(pending.result())
        return Path(path)

    def _decode_into(self, writer, latents: torch.Tensor) -> int:
        writer.write_batch(self.dreamer.decode(latents))
        return len(latents)
