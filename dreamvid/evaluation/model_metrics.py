"""The metrics that need the run's trained models: reconstruction, prediction, and the diversity dreams.

The models are reached only through `LatentModels`: encode frames to latent means, decode latents to frames, and
the dream model's initial state, one step, point prediction and NLL. `DreamerModels` provides them for a
`dreaming.Dreamer`; another model family provides the same six names. Latents are tensors (N, *latent_shape)
throughout, vectors (N, z) or maps (N, C, H, W): nothing here looks inside one.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from . import metrics as M
from .scoring import DIVERSITY_DREAMS, DIVERSITY_HORIZON

PREDICTION_KS = (1, 8, 32)
PREDICTION_CONTEXT = 16
MAX_STARTS = 64    # open-loop start points per held-out sequence
MAX_DECODE = 256   # point predictions decoded for PSNR, per k


@runtime_checkable
class LatentModels(Protocol):
    """What the model metrics use of a VAE and a dream model. Latents: tensors (B, *latent_shape)."""
    device: torch.device                                            # where the dream model's inputs go

    def encode(self, frames: np.ndarray) -> torch.Tensor: ...       # uint8 (N, S, S, 3) -> latent means, CPU float
    def decode(self, z: torch.Tensor) -> np.ndarray: ...            # latents -> uint8 (N, S, S, 3)
    def initial_state(self, batch: int) -> Any: ...                 # the dream model's state before any step
    def step(self, z: torch.Tensor, state: Any) -> tuple[Any, Any]: ...  # latents (B, ...) -> (params, state)
    def mean(self, params: Any) -> torch.Tensor: ...                # point prediction of the next latents
    def nll(self, params: Any, z: torch.Tensor) -> torch.Tensor: ...  # NLL (B,) of latents z, summed over dims


class DreamerModels:
    """`LatentModels` of a `Dreamer`: its VAE halves (in chunks) and its RNN."""

    def __init__(self, dreamer, chunk: int = 256):
        self.dreamer, self.rnn, self.chunk = dreamer, dreamer.rnn, chunk
        self.device = next(iter(self.rnn.parameters()), torch.zeros(0)).device
        self.step, self.mean, self.nll = self.rnn.step, self.rnn.mean, self.rnn.nll

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        mus = [torch.as_tensor(self.dreamer.encode(np.ascontiguousarray(frames[i:i + self.chunk]))[0]).float().cpu()
               for i in range(0, len(frames), self.chunk)]
        return torch.cat(mus)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        return np.concatenate([np.asarray(self.dreamer.decode(z[i:i + self.chunk]))
                               for i in range(0, len(z), self.chunk)])

    def initial_state(self, batch: int):
        init = getattr(self.rnn, "initial_state", None)
        return init(batch) if callable(init) else None


def latent_models(models) -> LatentModels:
    """`models` itself when it provides `LatentModels`, else (a `Dreamer`) its `DreamerModels`."""
    return models if isinstance(models, LatentModels) else DreamerModels(models)


@dataclass
class ModelMetrics:
    """What `evaluate` takes from the models: the report groups, the reconstructions, the diversity dreams."""
    groups: dict                   # {"reconstruction": ..., "prediction": ...}
    reconstructed: np.ndarray      # the VAE's reconstructions of held-out frames
    diversity_dreams: list         # dreams from one seed frame ...
    seed_frame: int                # ... this one


def measure_models(dreamer, heldout: list[np.ndarray], *, temperature: float, seed: int) -> ModelMetrics:
    """Reconstruction and prediction on the held-out sequences, and the diversity dreams from the held-out frame
    that `Dreamer` itself would start from with `seed`."""
    recon, reconstructed = reconstruction(dreamer, heldout)
    groups = {"reconstruction": recon, "prediction": prediction(dreamer, heldout)}
    seed_frame = int(dreamer.random_frame_index(random.Random(seed)))
    dreams = model_diversity_dreams(dreamer, temperature=temperature, seed=seed, frame_index=seed_frame)
    return ModelMetrics(groups, reconstructed, dreams, seed_frame)


def reconstruction(models, heldout: list[np.ndarray]) -> tuple[dict, np.ndarray]:
    """PSNR, SSIM and sharpness ratio of the VAE's reconstructions (decoded means) of up to 512 held-out frames, and
    the reconstructions. The sharpness ratio is the ceiling for a dream's: dreams are decoded by the same
    decoder. `models`: a `Dreamer` or `LatentModels`."""
    models = latent_models(models)
    frames = M.concat(heldout)
    frames = frames[M.evenly(len(frames), 512)]
    recon = models.decode(models.encode(frames))
    result = M.psnr_ssim(recon, frames)
    result["sharpness_ratio"] = M.ratio(float(M.laplacian_var(recon).mean()), float(M.laplacian_var(frames).mean()))
    result["frames"] = int(len(frames))
    return result, recon


def model_diversity_dreams(dreamer, *, temperature: float, seed: int, frame_index: int) -> list[np.ndarray]:
    """DIVERSITY_DREAMS dreams of DIVERSITY_HORIZON frames from the same seed frame, with seeds seed+1, seed+2..."""
    return [np.asarray(dreamer.session(temperature=temperature, seed=seed + 1 + k, frame_index=frame_index)
                       .next_frames(DIVERSITY_HORIZON)) for k in range(DIVERSITY_DREAMS)]


# ---------------------------------------------------------------------------------------------- prediction


@dataclass
class _Scores:
    """Scores gathered over held-out sequences: NLL and MSE values, point predictions and their true frames."""
    nll: list = field(default_factory=list)
    mse: list = field(default_factory=list)
    pred: list = field(default_factory=list)
    target: list = field(default_factory=list)


@torch.no_grad()
def prediction(models, heldout: list[np.ndarray], context: int = PREDICTION_CONTEXT) -> dict:
    """Latent NLL and MSE and decoded-frame PSNR of the dream model on held-out sequences.

    Teacher-forced: each step is fed the true latent, predicting the next one. Open-loop at k: after
    `context` true latents, the model is fed its own point predictions (`mean`) and scored k steps on.
    `models`: a `Dreamer` or `LatentModels`.
    """
    models = latent_models(models)
    teacher, open_loop = _Scores(), {k: _Scores() for k in PREDICTION_KS}
    for seq in heldout:
        if len(seq) < 2:
            continue
        z = models.encode(seq).to(models.device)
        _teacher_forced(models, z, seq, teacher)
        _open_loop(models, z, seq, open_loop, context)
    result = {"context": context, "teacher_forced": {
        "nll": float(np.mean(teacher.nll)) if teacher.nll else None,
        "mse": float(np.mean(teacher.mse)) if teacher.mse else None,
        "psnr": _decoded_psnr(models, teacher), "steps": len(teacher.nll)}, "open_loop": {}}
    for k in PREDICTION_KS:
        entry = open_loop[k]
        result["open_loop"][str(k)] = None if not entry.nll else {
            "nll": float(torch.cat(entry.nll).mean()), "mse": float(torch.cat(entry.mse).mean()),
            "psnr": _decoded_psnr(models, entry), "starts": int(sum(len(x) for x in entry.nll))}
    return result


def _teacher_forced(models: LatentModels, z: torch.Tensor, seq: np.ndarray, scores: _Scores) -> None:
    """Every step of one sequence fed its true latent, scored on the next."""
    state = models.initial_state(1)
    preds = []
    for t in range(len(z) - 1):
        params, state = models.step(z[t:t + 1], state)
        target = z[t + 1:t + 2]
        scores.nll.append(float(models.nll(params, target).mean()))
        mean = models.mean(params)
        scores.mse.append(float(((mean - target) ** 2).mean()))
        preds.append(mean)
    scores.pred.append(torch.cat(preds))
    scores.target.append(seq[1:])


def _open_loop(models: LatentModels, z: torch.Tensor, seq: np.ndarray, scores: dict[int, _Scores],
               context: int) -> None:
    """From start points t0 of one sequence (the last true latent fed), batched: `context` + 1 true latents, then
    the model's own point predictions; scored at each k of `scores`."""
    hmax = min(max(scores), len(z) - 1 - context)
    if hmax < 1:
        return
    starts = np.arange(context, len(z) - hmax)
    starts = starts[M.evenly(len(starts), MAX_STARTS)]
    state = models.initial_state(len(starts))
    for c in range(context + 1):
        params, state = models.step(z[_rows(starts - context + c, z)], state)
    for k in range(1, hmax + 1):
        mean = models.mean(params)
        if k in scores:
            target = z[_rows(starts + k, z)]
            scores[k].nll.append(models.nll(params, target).float().cpu())
            scores[k].mse.append(((mean - target) ** 2).flatten(1).mean(1).cpu())
            scores[k].pred.append(mean)
            scores[k].target.append(seq[starts + k])
        if k < hmax:
            params, state = models.step(mean, state)


def _rows(index: np.ndarray, z: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(index).to(z.device)


def _decoded_psnr(models: LatentModels, scores: _Scores) -> float | None:
    """Mean PSNR of up to MAX_DECODE evenly spaced decoded point predictions against their true frames."""
    if not scores.pred:
        return None
    z = torch.cat(scores.pred)
    target = np.concatenate([np.asarray(t) for t in scores.target])
    pick = M.evenly(len(z), MAX_DECODE)
    return float(M.frame_psnr(models.decode(z[pick]), target[pick]).mean())
