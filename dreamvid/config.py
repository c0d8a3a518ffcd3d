"""Run configuration: presets as dataclasses, serialized to `config.json` in every run folder.

Model choice is made here, by config, never by if-chains spread over the other modules: `models.py` builds
whatever a `VAEConfig` / `RNNConfig` describes, and a new preset is one entry in `PRESETS`. Every field is set
by some preset or command-line option; settings that were measured and not kept are retired (`RETIREMENTS`).
Nothing here imports torch: the command line reads the preset names and choices from this module.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import DreamvidError, UsageError

CONFIG_FORMAT = 1
SUPPORTED_SIZES = (32, 64, 128, 256)
CROPS = ("center", "full")                   # square centre crop, or the whole frame letterboxed
BACKENDS = ("torch", "onnx")   # what dreams: torch, or ONNX Runtime through the run's traced graphs
RNN_CELLS = ("lstm", "lnlstm")
DEFAULT_MINUTES = 10.0                       # the budget without --minutes or epochs: worth watching on a laptop
MOST_CODES = 4096                            # spatial: combinations of FSQ levels a cell may have (the dream
                                             # model's head has one output per code)

# The range of every number a config.json may hold: a hand-edited or damaged file is refused when it is read,
# before it can ask for a model too big to build. None (where a field allows it) is not checked.
VAE_BOUNDS = {"z_dim": (1, 4096), "channels": (1, 1024), "hidden": (1, 8192), "free_bits": (0, 100), "lr": (0, 1),
              "levels": (2, 64), "encoder_blocks": (0, 16), "decoder_blocks": (0, 16), "grad_clip": (0, 1_000_000)}
RNN_BOUNDS = {"hidden": (1, 8192), "layers": (1, 8), "gaussians": (1, 64), "seq_len": (1, 4096), "lr": (0, 1),
              "lr_decay": (0, 1), "grad_clip": (0, 1_000_000), "feed_noise": (0, 10), "temperature": (0, 100),
              "width": (1, 1024), "sampling_steps": (1, 64), "global_size": (1, 1024)}
DATA_BOUNDS = {"fps": (0, 1000)}
TRAIN_BOUNDS = {"minutes": (0, 1_000_000), "vae_epochs": (0, 10 ** 9), "rnn_epochs": (0, 10 ** 9),
                "batch_size": (1, 65536), "rnn_batch_size": (1, 65536), "vae_share": (0, 1), "seed": (0, 2 ** 63 - 1)}


def check_bounds(section: str, config: Any, bounds: dict[str, tuple[float, float]]) -> None:
    """ValueError for a number (or a member of a tuple of numbers) of `config` outside its range in `bounds`."""
    for name, (low, high) in bounds.items():
        value = getattr(config, name)
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if item is None and not isinstance(value, (tuple, list)):
                continue
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not low <= item <= high:
                raise ValueError(f"{section}.{name} must be from {low} to {high}, not {item!r}")


@dataclass
class VAEConfig:
    kind: str = "conv"                       # "spatial" (a map of FSQ cells), "conv" (World Models) or "dense" (2016)
    size: int = 64                           # square input side in pixels
    z_dim: int = 32
    channels: tuple[int, ...] = (32, 64, 128, 256)  # conv: one k4 s2 stage each, more stages added above 64 px;
                                             # spatial: (width of the convolutions at the cell grid,)
    hidden: tuple[int, ...] = (256, 256)     # dense: hidden layer widths (softplus)
    reconstruction: str = "mse"              # "mse" (summed over pixels) or "bce" (Bernoulli cross-entropy)
    free_bits: float = 0.0                   # KL tolerance per latent dimension, in nats (World Models: 0.5)
    lr: float = 1e-3
    levels: tuple[int, ...] = ()             # spatial: FSQ levels of each latent channel, e.g. (8, 5, 5, 5)
    encoder_blocks: int = 1                  # spatial: hidden layers of the per-cell encoder
    decoder_blocks: int = 2                  # spatial: residual blocks of the decoder at the cell grid
    grad_clip: float | None = None           # spatial: largest gradient norm of the loss per pixel (it diverged
                                             # after ~8,000 steps without)

    def __post_init__(self):
        check_bounds("vae", self, VAE_BOUNDS)
        if self.size not in SUPPORTED_SIZES:
            raise ValueError(f"vae.size must be one of {', '.join(map(str, SUPPORTED_SIZES))}, not {self.size!r}")
        if len(self.channels) > 8 or len(self.hidden) > 8 or len(self.levels) > 8:
            raise ValueError("vae.channels, vae.hidden and vae.levels hold at most 8 numbers each")
        if self.kind == "spatial" and (not self.levels or math.prod(self.levels) > MOST_CODES):
            raise ValueError(f"a spatial VAE needs vae.levels whose product is at most {MOST_CODES}")


@dataclass
class RNNConfig:
    kind: str = "mdn"                        # "map" (ConvGRU over latent maps), "mdn" (mixture density LSTM) or
                                             # "regression" (squared error)
    cell: str = "lstm"                       # "lstm" (both papers) or "lnlstm" (layer-normalised)
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0                     # share of the recurrent outputs dropped before the head, training
    gaussians: int = 5                       # mdn: mixture components per latent dimension
    seq_len: int = 32                        # training window length (frames predicted per window)
    lr: float = 1e-3
    lr_decay: float = 1.0                    # multiplied into the learning rate after every epoch
    grad_clip: float = 1.0
    keep_best: bool = False                  # end with the epoch of lowest held-out NLL, not the last one
    feed_noise: float = 0.0                  # regression: half-width of uniform noise added to fed-back latents
    temperature: float = 1.0                 # default dreaming temperature
    decode_spread: float = 1.0               # share of each sample's random spread that its frame shows; the
                                             # RNN is always fed the whole sample (0: frames show the centers)
    width: int = 48                          # map: channels of the renderer's convolutions at the cell grid
    sampling_steps: int = 4                  # map: MaskGIT rounds that fill one map
    global_size: int = 32                    # map: numbers in each frame's global latent, which the LSTM moves

    def __post_init__(self):
        # Checked here so that a hand-edited or damaged config.json fails on load, not mid-dream.
        check_bounds("rnn", self, RNN_BOUNDS)
        if self.cell not in RNN_CELLS:
            raise ValueError(f"rnn.cell must be one of {', '.join(RNN_CELLS)}, not {self.cell!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"rnn.dropout must be at least 0 and below 1, not {self.dropout}")
        if not 0 <= self.decode_spread <= 1:
            raise ValueError(f"rnn.decode_spread must be from 0 to 1, not {self.decode_spread}")


@dataclass
class DataConfig:
    size: int = 64
    fps: float | None = None                 # None: the first source's, capped at 30
    crop: str = "center"
    sources: list[str] = field(default_factory=list)
    cache_key: str = ""

    def __post_init__(self):
        check_bounds("data", self, DATA_BOUNDS)
        if self.size not in SUPPORTED_SIZES:
            raise ValueError(f"data.size must be one of {', '.join(map(str, SUPPORTED_SIZES))}, not {self.size!r}")


@dataclass
class TrainConfig:
    minutes: float | None = None             # wall-clock budget for the whole job (None: DEFAULT_MINUTES unless
                                             # epochs are given)
    vae_epochs: int | None = None
    rnn_epochs: int | None = None
    batch_size: int = 64                     # VAE frames per step
    rnn_batch_size: int = 32                 # RNN windows per step
    vae_share: float = 0.6                   # share of a time budget given to the VAE
    seed: int = 0
    bf16: bool = True                        # bf16 autocast where the hardware does it fast

    def __post_init__(self):
        check_bounds("train", self, TRAIN_BOUNDS)

    def budget_seconds(self) -> float | None:
        """The job's wall-clock budget, None when only epochs bound it."""
        if self.minutes is None and self.vae_epochs is None and self.rnn_epochs is None:
            return DEFAULT_MINUTES * 60
        return None if self.minutes is None else self.minutes * 60


# --- retired settings -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retirement:
    """Settings one version measured and did not keep (docs/results.md), with the default each had there, and
    values of fields that stay, retired with the models they chose. A config.json that holds a retired field at
    its old default is read without it; any other value describes a model this version cannot build, and loading
    says so."""

    version: str
    commit: str                                  # the last commit that had them: a tag does not travel with a clone
    fields: dict[str, dict[str, Any]]
    values: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)


RETIREMENTS = (
    Retirement("0.1.0", "7160bca", fields={
        "vae": {"kl_weight": 1.0, "kl_anneal": 0.0, "lr_schedule": "constant", "adversarial_weight": 0.0,
                "adversarial_start": 0.3, "critic_channels": 32, "gradient_weight": 0.0, "ssim_weight": 0.0,
                "edge_weight": 0.0, "refine": 0, "coords": False, "grid": 0, "decoder_tuning": 0.0},
        "rnn": {"input_noise": 0.0, "open_loop": 0.0, "latents": "samples"},
        "train": {"default_minutes": DEFAULT_MINUTES},
    }, values={"vae": {"reconstruction": ("l1",)}, "rnn": {"cell": ("gru", "transformer")}}),
    # The ConvGRU map dream model's levers: its maps eroded whatever they were (docs/results.md).
    Retirement("0.3.0", "174d4e2", fields={"rnn": {"context_noise": 0.0, "own_samples": 0.0}}),
)


def without_retired(raw: dict[str, Any], path: Path | str = "config.json") -> dict[str, Any]:
    """`raw` (a parsed config.json) without the retired fields it holds at their old defaults; a DreamvidError
    naming the first retired setting it relies on."""
    cleaned = dict(raw)
    for retirement in RETIREMENTS:
        for section in ("vae", "rnn", "data", "train"):
            part = cleaned.get(section)
            retired, values = retirement.fields.get(section, {}), retirement.values.get(section, {})
            if not isinstance(part, dict):
                continue
            for name, value in part.items():
                if (name in retired and value != retired[name]) or value in values.get(name, ()):
                    raise _retired_error(path, f"{section}.{name}", value, retirement)
            cleaned[section] = {name: value for name, value in part.items() if name not in retired}
    return cleaned


def _retired_error(path: Path | str, name: str, value: Any, retirement: Retirement) -> DreamvidError:
    version = retirement.version
    return DreamvidError(f"{path} sets {name} = {json.dumps(value)}, a setting of dreamvid {version} (commit "
                         f"{retirement.commit}) that this version ({_version()}) retired",
                         f"retrain the run with this version, or dream it with dreamvid {version}")


# --- the run configuration ---------------------------------------------------------------------------------

@dataclass
class RunConfig:
    preset: str
    vae: VAEConfig
    rnn: RNNConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: str = ""
    format: int = CONFIG_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        return RunConfig(
            preset=raw["preset"],
            vae=_dataclass_from_dict(VAEConfig, raw["vae"]),
            rnn=_dataclass_from_dict(RNNConfig, raw["rnn"]),
            data=_dataclass_from_dict(DataConfig, raw.get("data", {})),
            train=_dataclass_from_dict(TrainConfig, raw.get("train", {})),
            version=raw.get("version", ""),
            format=raw.get("format", 0),
        )

    @classmethod
    def load(cls, path: Path | str) -> RunConfig:
        """The config in `path`, written by this version or an earlier one; a DreamvidError for anything else."""
        try:
            config = cls.from_dict(without_retired(json.loads(Path(path).read_text()), path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DreamvidError(f"{path} is not a readable dreamvid config ({exc})",
                                "train the run again or restore config.json") from None
        if config.format != CONFIG_FORMAT:
            raise DreamvidError(f"{path} was written by config format {config.format} (this dreamvid reads "
                                f"{CONFIG_FORMAT}, version {_version()})",
                                "retrain the run with this version of dreamvid")
        if config.preset not in PRESETS:
            raise DreamvidError(f"{path} uses preset {config.preset!r}, unknown to dreamvid {_version()}",
                                f"use a dreamvid version that has it, or retrain with one of {', '.join(PRESETS)}")
        return config


def _dataclass_from_dict(cls: type, raw: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise KeyError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) and "tuple" in str(known[k].type) else v for k, v in raw.items()}
    return cls(**values)


def _version() -> str:
    from . import __version__
    return __version__


# --- presets -----------------------------------------------------------------------------------------------

def _worldmodels() -> RunConfig:
    return RunConfig(
        preset="worldmodels",
        vae=VAEConfig(kind="conv", size=64, z_dim=32, reconstruction="mse", free_bits=0.5, lr=1e-3),
        rnn=RNNConfig(kind="mdn", hidden=256, layers=1, gaussians=5, seq_len=32, lr=1e-3, temperature=1.0),
    )


def _classic() -> RunConfig:
    return RunConfig(
        preset="classic",
        vae=VAEConfig(kind="dense", size=128, z_dim=64, hidden=(256, 256), reconstruction="bce", lr=1e-4),
        rnn=RNNConfig(kind="regression", hidden=256, layers=2, seq_len=50, lr=2e-2, lr_decay=0.97,
                      grad_clip=5.0, feed_noise=0.1, temperature=1.0),
        data=DataConfig(size=128, fps=10),
    )


def _default() -> RunConfig:
    # The spatial family (docs/results.md). Every 4x4-pixel patch keeps its own FSQ cell, computed from its own
    # pixels, so road edges, other cars and sprites survive the auto-encoder; World Models' MDN-LSTM (with the
    # vector recipe's measured changes: a layer-norm LSTM, dropout 0.3, its best held-out epoch, half of each
    # sample's spread shown) moves a global latent of each map, and a renderer draws the next map cell by cell
    # given it and the map before. The budget is split evenly: the dream model needs its minutes as much as the
    # auto-encoder does.
    return RunConfig(
        preset="default",
        vae=VAEConfig(kind="spatial", size=64, channels=(64,), levels=(5, 5, 5), encoder_blocks=2,
                      decoder_blocks=2, lr=2e-3, grad_clip=0.05),
        rnn=RNNConfig(kind="map", cell="lnlstm", hidden=256, gaussians=5, dropout=0.3, seq_len=16, lr=2e-3,
                      grad_clip=1.0, width=32, sampling_steps=2, global_size=32, keep_best=True, temperature=0.7,
                      decode_spread=0.5),
        train=TrainConfig(batch_size=16, rnn_batch_size=16, vae_share=0.5),
    )


def _tiny() -> RunConfig:
    # For tests and smoke runs: the spatial family's code paths with models small enough to train in seconds.
    return RunConfig(
        preset="tiny",
        vae=VAEConfig(kind="spatial", size=32, channels=(8,), levels=(5, 3), encoder_blocks=0, decoder_blocks=1,
                      lr=3e-3, grad_clip=0.05),
        rnn=RNNConfig(kind="map", hidden=16, gaussians=2, width=8, seq_len=4, lr=3e-3, sampling_steps=2,
                      global_size=4, keep_best=True),
        data=DataConfig(size=32),
        train=TrainConfig(batch_size=16, rnn_batch_size=4, bf16=False),
    )


def _tiny_vector() -> RunConfig:
    # The vector family's code paths (classic, worldmodels), as small.
    return RunConfig(
        preset="tiny-vector",
        vae=VAEConfig(kind="conv", size=32, z_dim=8, channels=(8, 16, 16, 32), free_bits=0.0, lr=2e-3),
        rnn=RNNConfig(kind="mdn", hidden=32, layers=1, gaussians=3, seq_len=8, lr=3e-3),
        data=DataConfig(size=32),
        train=TrainConfig(batch_size=16, rnn_batch_size=8, bf16=False),
    )


PRESETS = {"default": _default, "worldmodels": _worldmodels, "classic": _classic, "tiny": _tiny,
           "tiny-vector": _tiny_vector}
PRESET_NAMES = tuple(PRESETS)


def make_config(preset: str | RunConfig = "default", *, size: int | None = None, fps: float | None = None,
                crop: str = "center", **train_overrides: Any) -> RunConfig:
    """The preset's config (a name, or a RunConfig to start from, as ablations do) with the user's data and
    training choices applied; None leaves a default."""
    if isinstance(preset, RunConfig):
        config = copy.deepcopy(preset)
    elif preset in PRESETS:
        config = PRESETS[preset]()
    else:
        raise UsageError(f"unknown preset {preset!r}", f"choose one of {', '.join(PRESETS)}")
    size = size or config.data.size
    if size not in SUPPORTED_SIZES:
        raise UsageError(f"--size {size} is not supported", f"use one of {', '.join(map(str, SUPPORTED_SIZES))}")
    if crop not in CROPS:
        raise UsageError(f"--crop {crop!r} is not supported", f"use one of {', '.join(CROPS)}")
    if fps is not None and not fps > 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    config.vae = replace(config.vae, size=size)
    config.data = replace(config.data, size=size, fps=fps if fps is not None else config.data.fps, crop=crop)
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    _check_train_overrides(overrides)
    try:
        config.train = replace(config.train, **overrides)
    except ValueError as error:
        raise UsageError(str(error).replace("train.", "--").replace("_", "-")) from None
    config.version = _version()
    return config


def _check_train_overrides(overrides: dict[str, Any]) -> None:
    known = {f.name for f in fields(TrainConfig)}
    for name, value in overrides.items():
        option = f"--{name.replace('_', '-')}"
        if name not in known:
            raise TypeError(f"unknown training option {name!r}")
        if name == "minutes" and not value > 0:
            raise UsageError(f"{option} must be positive, got {value}")
        if name in ("vae_epochs", "rnn_epochs") and value < 0:
            raise UsageError(f"{option} must be 0 or more, got {value}")
        if name in ("batch_size", "rnn_batch_size") and value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")
