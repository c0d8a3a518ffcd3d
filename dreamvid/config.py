"""Run configuration: presets as dataclasses, serialized to `config.json` in every run folder.

Model choice is made here, by config, never by if-chains spread over the other modules: `models.py` builds
whatever a `VAEConfig` / `RNNConfig` describes, and a new preset is one entry in `PRESETS`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import DreamvidError, UsageError

CONFIG_FORMAT = 1
SUPPORTED_SIZES = (32, 64, 128, 256)
RNN_CELLS = ("lstm", "gru", "lnlstm", "transformer")
TRANSFORMER_HEADS = 4


@dataclass
class VAEConfig:
    kind: str = "conv"                       # "conv" (World Models layout) or "dense" (2016 notebook)
    size: int = 64                           # square input side in pixels
    z_dim: int = 32
    channels: tuple[int, ...] = (32, 64, 128, 256)  # conv: one k4 s2 stage each, more stages added above 64 px
    hidden: tuple[int, ...] = (256, 256)     # dense: hidden layer widths (softplus)
    reconstruction: str = "mse"              # "mse" or "l1" (summed over pixels), "bce" (Bernoulli cross-entropy)
    kl_weight: float = 1.0
    free_bits: float = 0.0                   # KL tolerance per latent dimension, in nats (World Models: 0.5)
    kl_anneal: float = 0.0                   # share of the VAE stage over which the KL weight rises from 0
    lr: float = 1e-3
    lr_schedule: str = "constant"            # "constant", or "cosine": decay to 0 over the VAE's budget
    adversarial_weight: float = 0.0          # > 0: train a patch critic and add its hinge loss (per pixel)
    adversarial_start: float = 0.3           # share of the VAE stage trained before the critic joins
    critic_channels: int = 32
    gradient_weight: float = 0.0             # > 0: add the gradient difference loss (sharp edges, not blur)
    ssim_weight: float = 0.0                 # > 0: add (1 - SSIM) / 2, summed over pixels, at this weight
    edge_weight: float = 0.0                 # > 0: weight each pixel's loss by 1 + this x its local contrast
                                             # (over the batch mean), so thin edges and sprites count
    refine: int = 0                          # conv: > 0 ends the decoder with 3x3 convolutions of this width at
                                             # full resolution (0: World Models' last transposed convolution)
    coords: bool = False                     # conv: feed every decoder stage its pixels' x and y (CoordConv)
    grid: int = 0                            # conv: > 0 makes the latent a grid x grid map of z_dim / grid^2
                                             # channels, each cell drawn from its own patch (0: one vector)
    decoder_tuning: float = 0.0              # share of the VAE stage, at its end, in which the encoder is frozen
                                             # and the decoder alone learns to draw each frame from its mean

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"vae.lr_schedule must be 'constant' or 'cosine', not {self.lr_schedule!r}")
        if not 0 <= self.kl_anneal <= 1:
            raise ValueError(f"vae.kl_anneal must be from 0 to 1, not {self.kl_anneal}")
        if self.refine < 0:
            raise ValueError(f"vae.refine must be 0 or more, not {self.refine}")
        # The conv encoder halves the frame per stage, so a grid side must be a power of two below the size.
        if self.grid and (self.grid & (self.grid - 1) or not 1 < self.grid <= self.size // 2
                          or self.z_dim % (self.grid * self.grid)):
            raise ValueError(f"vae.grid must be 0, or a power of two from 2 to {self.size // 2} whose square "
                             f"divides vae.z_dim ({self.z_dim}), not {self.grid}")
        if not 0 <= self.decoder_tuning < 1:
            raise ValueError(f"vae.decoder_tuning must be at least 0 and below 1, not {self.decoder_tuning}")


@dataclass
class RNNConfig:
    kind: str = "mdn"                        # "mdn" (mixture density LSTM) or "regression" (squared error)
    cell: str = "lstm"                       # "lstm" (both papers), "gru", "lnlstm" (layer norm) or "transformer"
                                             # (causal, over the last seq_len latents; hidden is its width)
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0                     # share of the recurrent outputs dropped before the head, training
    gaussians: int = 5                       # mdn: mixture components per latent dimension
    seq_len: int = 32                        # training window length (frames predicted per window)
    lr: float = 1e-3
    lr_decay: float = 1.0                    # multiplied into the learning rate after every epoch
    grad_clip: float = 1.0
    input_noise: float = 0.0                 # std of Gaussian noise added to input latents while training
    open_loop: float = 0.0                   # share of input latents replaced by the RNN's own samples
    latents: str = "samples"                 # learn from "samples" of each frame's posterior or their "means"
    keep_best: bool = False                  # end with the epoch of lowest held-out NLL, not the last one
    feed_noise: float = 0.0                  # regression: half-width of uniform noise added to fed-back latents
    temperature: float = 1.0                 # default dreaming temperature
    decode_spread: float = 1.0               # share of each sample's random spread that its frame shows; the
                                             # RNN is always fed the whole sample (0: frames show the centers)

    def __post_init__(self):
        # Checked here so that a hand-edited or damaged config.json fails on load, not mid-dream.
        if self.cell not in RNN_CELLS:
            raise ValueError(f"rnn.cell must be one of {', '.join(RNN_CELLS)}, not {self.cell!r}")
        if self.cell == "transformer" and self.hidden % TRANSFORMER_HEADS:
            raise ValueError(f"rnn.hidden is the transformer's width and must be divisible by {TRANSFORMER_HEADS} "
                             f"(its attention heads), not {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"rnn.dropout must be at least 0 and below 1, not {self.dropout}")
        if self.latents not in ("samples", "means"):
            raise ValueError(f"rnn.latents must be 'samples' or 'means', not {self.latents!r}")
        if not 0 <= self.open_loop < 1:
            raise ValueError(f"rnn.open_loop must be at least 0 and below 1, not {self.open_loop}")
        if not 0 <= self.decode_spread <= 1:
            raise ValueError(f"rnn.decode_spread must be from 0 to 1, not {self.decode_spread}")


@dataclass
class DataConfig:
    size: int = 64
    fps: float | None = None                 # None: the first source's, capped at 30
    crop: str = "center"
    sources: list[str] = field(default_factory=list)
    cache_key: str = ""


@dataclass
class TrainConfig:
    minutes: float | None = None             # wall-clock budget for the whole job
    vae_epochs: int | None = None
    rnn_epochs: int | None = None
    batch_size: int = 64                     # VAE frames per step
    rnn_batch_size: int = 32                 # RNN windows per step
    vae_share: float = 0.6                   # share of a time budget given to the VAE
    seed: int = 0
    bf16: bool = True                        # bf16 autocast where the hardware does it fast
    # Without --minutes or epochs a run trains this long: long enough to be worth watching on a laptop CPU.
    default_minutes: float = 10.0


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
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
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
    def load(cls, path: Path) -> "RunConfig":
        try:
            raw = json.loads(Path(path).read_text())
            config = cls.from_dict(raw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
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
    # World Models' models, changed where measurements on four clips said so (docs/results.md):
    # - the budget split by need, 90% VAE: the MDN-RNN's held-out NLL bottoms out within seconds, while the VAE
    #   still improves at the end of its time;
    # - the RNN weights of the best held-out epoch, not the last: after that epoch the RNN memorises the clip,
    #   and on short clips its dreams replay the source (bikes: 76 consecutive frames, 23 with this);
    # - frames show the sample's center plus half its deviation: the MDN's spread is mostly the VAE's posterior
    #   noise, and showing all of it makes frames flicker (frame difference 1.3-1.4x the source's on the games).
    # - dropout 0.3 on the LSTM's outputs: the best held-out epoch comes later; over four RNN training seeds on
    #   four clips it met more of issue 4's figures on three seeds (20.5 of 36 on average, 19.0 without), and
    #   River Raid's realism averaged 3.9 against 4.6;
    # - a layer-norm LSTM: over the same four RNN seeds it met 21.0 of 36 against 20.5, more on three seeds, and
    #   no Enduro dream froze (two of four did with nn.LSTM); `bikes` replays longer with it (40-93 frames).
    # RNN input noise, open-loop inputs, a lower or higher temperature, a patch critic, L1, a gradient-difference
    # loss, an SSIM term, a lower KL weight, KL annealing, z = 64, a wider decoder, decoder tuning on latent
    # means, 128 px, a grid of latent cells, a Bernoulli decoder loss, a GRU, a causal transformer, a smaller
    # LSTM, an RNN trained on latent means, another RNN epoch than the best held-out one, and time-correlated
    # noise or re-projection while dreaming were each measured and not kept (re-projection helps live footage
    # and stills games: it is `dreamvid dream --reproject`).
    worldmodels = _worldmodels()
    return replace(worldmodels, preset="default", train=TrainConfig(vae_share=0.9),
                   rnn=replace(worldmodels.rnn, cell="lnlstm", keep_best=True, decode_spread=0.5, dropout=0.3))


def _tiny() -> RunConfig:
    # For tests and smoke runs: the same code paths with models small enough to train in seconds.
    return RunConfig(
        preset="tiny",
        vae=VAEConfig(kind="conv", size=32, z_dim=8, channels=(8, 16, 16, 32), free_bits=0.0, lr=2e-3),
        rnn=RNNConfig(kind="mdn", hidden=32, layers=1, gaussians=3, seq_len=8, lr=3e-3),
        data=DataConfig(size=32),
        train=TrainConfig(batch_size=16, rnn_batch_size=8, bf16=False),
    )


PRESETS = {"default": _default, "worldmodels": _worldmodels, "classic": _classic, "tiny": _tiny}


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
    if crop not in ("center", "full"):
        raise UsageError(f"--crop {crop!r} is not supported", "use center or full")
    if fps is not None and not fps > 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    config.vae = replace(config.vae, size=size)
    config.data = replace(config.data, size=size, fps=fps if fps is not None else config.data.fps, crop=crop)
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    _check_train_overrides(overrides)
    config.train = replace(config.train, **overrides)
    config.version = _version()
    return config


def _check_train_overrides(overrides: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, value in overrides.items():
        if name not in known:
            raise TypeError(f"unknown training option {name!r}")
        if name in ("minutes",) and not value > 0:
            raise UsageError(f"--minutes must be positive, got {value}")
        if name in ("vae_epochs", "rnn_epochs") and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
        if name in ("batch_size", "rnn_batch_size") and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
