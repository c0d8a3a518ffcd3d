"""`train`: a run folder and its config, then the stages in order (VAE, encode, RNN), resumable between any two
steps."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..cache import HELD_OUT_PERCENT, FrameCache, build_cache, minimum_frames
from ..config import RunConfig, make_config
from ..device import convolutional, fast_bf16, place, resolve_device, uses_channels_last
from ..errors import DreamvidError, Interrupted, UsageError
from ..models import DreamModel, VAE, build_rnn, build_vae
from ..rundir import RunDir
from ..video import probe
from .control import Budget, Cadence, Stop, StopRequest
from .loop import STAGES, Stage, StageLoop, TrainState
from .parallel import World, peers_watched
from .previews import Previews
from .reporting import Reporter, warn
from .rnn_stage import LatentWindows, RNNStage
from .vae_stage import FrameBatches, VAEStage, encode_latents


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
          stop: threading.Event | None = None, nproc: int = 1, port: int | None = None) -> Run:
    """Train a VAE and an RNN on `sources` into the run folder `out`; see `dreamvid train --help`. With `nproc`
    above 1, that many data-parallel processes on this machine (launch.py); under torchrun, this process's part
    of the job."""
    settings = dict(sources=sources, out=out, preset=preset, size=size, fps=fps, crop=crop, minutes=minutes,
                    vae_epochs=vae_epochs, rnn_epochs=rnn_epochs, batch_size=batch_size, device=device, seed=seed,
                    resume=resume, force=force, progress=progress)
    if nproc != 1 or port is not None:
        from .launch import launch
        if on_event is not None or stop is not None:
            raise UsageError("on_event and stop watch one process", "train with nproc=1 to use them")
        return launch(nproc, port, settings)
    world = World.from_env()
    torch_device = world.device(resolve_device(device))
    run = RunDir(out)
    with world.joined(torch_device), peers_watched(world, run.path):
        try:
            config = world.from_main(lambda: _prepare_run(run, settings)) or run.read_config()
            job = TrainingJob.prepare(run, config, torch_device, progress, on_event, stop, world)
            return job.run_to_end()
        except DreamvidError as error:
            error.quiet = error.quiet or not world.main   # process 0 tells it
            raise


def _prepare_run(run: RunDir, settings: dict) -> RunConfig:
    """The run folder made (or settled, to resume), its frame cache built and config.json written."""
    sources = source_list(settings["sources"])
    if settings["resume"]:
        config = _config_to_resume(run, sources)
        run.settle_checkpoint()
    else:
        _check_sources(sources)  # bad sources and settings fail before RUN_DIR is touched, even with --force
        config = make_config(settings["preset"], **{name: settings[name] for name in (
            "size", "fps", "crop", "minutes", "vae_epochs", "rnn_epochs", "batch_size", "seed")})
        run.create(settings["force"])
        config.data.sources = [str(Path(s).resolve()) for s in sources]
    open_frame_cache(run, config, settings["progress"])
    run.write_config(config)
    return config


def source_list(sources: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """train's `sources`: one video or several."""
    return [sources] if isinstance(sources, (str, Path)) else list(sources)


def _check_sources(sources: list) -> None:
    if not sources:
        raise UsageError("no source video given", "pass one or more video files: dreamvid train clip.mp4 -o RUN")
    for source in sources:
        probe(source)


def _config_to_resume(run: RunDir, sources: list) -> RunConfig:
    if not run.is_run():
        raise UsageError(f"{run.path} is not a dreamvid run, nothing to resume", "drop --resume to start a new run")
    config = run.read_config()
    if sources and [str(Path(s).resolve()) for s in sources] != config.data.sources:
        raise UsageError(f"{run.path} was trained on other sources", "resume without SOURCE, or train a new run")
    return config


def open_frame_cache(run: RunDir, config: RunConfig, show_progress: bool) -> FrameCache:
    """The run's frame cache, built or reused, checked to be long enough; its key and rate go into `config`."""
    data = config.data
    missing = [s for s in data.sources if not Path(s).exists()]
    if missing:
        raise UsageError(f"source {missing[0]} does not exist", "check the path")
    cache = build_cache(data.sources, run.cache_root, size=data.size, fps=data.fps, crop=data.crop,
                        progress=show_progress, warn=warn)
    window = config.rnn.seq_len
    need = minimum_frames(window)
    for sequence in cache.sequences:
        count = sequence.stop - sequence.start
        if count < need:
            raise DreamvidError(
                f"{sequence.source} gives {count} frames at {cache.fps:g} fps; training needs at least {need} "
                f"(a {window}-frame RNN window plus a {HELD_OUT_PERCENT}% held-out tail)",
                "use a longer clip or a higher --fps")
    data.cache_key, data.fps = cache.directory.name, cache.fps
    return cache


class TrainingJob:
    """One run trained from wherever its state says to the end. The stages do the training; the job hands them
    their collaborators, commits the state between them, and turns a stop request into a saved `Interrupted`."""

    def __init__(self, run: RunDir, config: RunConfig, cache: FrameCache, vae: VAE, rnn: DreamModel,
                 device: torch.device, show_progress: bool, on_event: Callable[[dict], None] | None,
                 stop: threading.Event | None, world: World = World()):
        self.run, self.config, self.cache, self.vae, self.rnn, self.device = run, config, cache, vae, rnn, device
        self.world = world
        self.show_progress = show_progress and world.main
        self.bf16 = config.train.bf16 and fast_bf16(device)
        self.state = TrainState.from_json(run.read_state())
        self.budget = Budget(config.train.budget_seconds(), config.train.vae_share, self.state.elapsed)
        self.stop = StopRequest(stop)
        self.reporter = Reporter(run, self.state, self.budget, show_progress, on_event, writes=world.main)
        self.previews = Previews(run, config.train.seed, device)
        self.loop = StageLoop(self.state, self.budget, self.stop, self.reporter, Cadence(), self.commit, world)

    @classmethod
    def prepare(cls, run: RunDir, config: RunConfig, device: torch.device, show_progress: bool = True,
                on_event: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
                world: World = World()) -> TrainingJob:
        """The run's frame cache opened (_prepare_run built it) and both models built from the seed. The budget's
        clock starts here: a long source does not eat into training time."""
        cache = run.frame_cache(config.data.cache_key)
        if cache is None:
            raise DreamvidError(f"the frame cache in {run.cache_root} is missing on this machine",
                                "every training process must see the run folder: put it on a shared file system")
        torch.manual_seed(config.train.seed)
        vae = place(build_vae(config.vae), device)
        rnn = build_rnn(config.rnn, vae).to(device)
        return cls(run, config, cache, vae, rnn, device, show_progress, on_event, stop, world)

    def run_to_end(self) -> Run:
        self.commit()  # from here on the folder is a resumable run, even before the first checkpoint
        stages = {"vae": self._train_vae, "encode": self._encode, "rnn": self._train_rnn}
        try:
            with self.stop.installed():
                for stage, following in zip(STAGES, STAGES[1:]):
                    if self.state.stage == stage:
                        stages[stage]()
                        self.state.advance(following)
                        self.commit()
                        self.world.barrier()   # what process 0 saved is there for the next stage
        except Interrupted:
            self.reporter.progress(force=True, interrupted=True)
            raise
        if self.world.main:
            self.previews.losses()
        self.reporter.progress(force=True)
        return Run(self.run.path, self.config)

    def commit(self) -> None:
        """Write the state: the marker that everything saved before it belongs to one consistent checkpoint."""
        self.state.elapsed = self.budget.elapsed()
        if self.world.main:
            self.run.write_state(self.state.to_json())

    def _train_vae(self) -> None:
        frames = FrameBatches(self.cache, self.device, uses_channels_last(self.vae, self.device),
                              self.world.local_size)
        train = self.config.train
        self._train(VAEStage(self.vae, frames, self.run, self.previews, lr=self.config.vae.lr,
                             batch_size=train.batch_size, epochs=train.vae_epochs, seed=train.seed, bf16=self.bf16,
                             world=self.world))

    def _encode(self) -> None:
        self.run.load_weights("vae", self.vae)
        encode_latents(self.vae, self.cache, self.run, self.device, self.bf16, self.show_progress, self.world)

    def _train_rnn(self) -> None:
        self.run.load_weights("vae", self.vae)  # for the dream previews
        windows = LatentWindows(self.run.load_latents(), self.config.rnn.seq_len, self.device)
        train = self.config.train
        self._train(RNNStage(self.rnn, self.vae, windows, self.run, self.previews, self.state,
                             batch_size=train.rnn_batch_size, epochs=train.rnn_epochs, seed=train.seed,
                             bf16=self.bf16 and convolutional(self.rnn), world=self.world))

    def _train(self, stage: Stage) -> None:
        stage.restore()
        if self.loop.run(stage) is Stop.INTERRUPTED:
            self.loop.save(stage)
            raise Interrupted(f"training interrupted during the {stage.name.upper()} stage; progress saved in "
                              f"{self.run.path}", f"resume with: dreamvid train -o {self.run.path} --resume")
        if self.world.main:
            stage.finish()
        self.loop.checkpoint(stage)
