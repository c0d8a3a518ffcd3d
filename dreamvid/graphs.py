"""A trained run's models as graphs: two ONNX graphs, a dream step and a decoder, checked against torch and dreamed
through ONNX Runtime (`dreamvid dream --backend onnx`; `dreamvid export` writes them out); and the same dream step
traced by TorchScript, which the torch backend steps the map model through on the CPU (`TracedStep`).

    step.onnx     (z, h, c, temperature, noise_0, noise_1, ...) -> (shown, next_z, next_h, next_c)
                  One dream step for one dream: the latent to feed back is `next_z`, the one to decode `shown`
                  (they differ where a preset shows less than each sample's spread). The random numbers are
                  inputs, so the caller owns the randomness: the manifest says which are uniform in [0, 1) and
                  which normal.
    decoder.onnx  (z (N, *latent)) -> frames (N, S, S, 3), float in [0, 1]: x 255 and rounded, the pixels

The graphs are traced from the very `dream_step` and `decode` that dreaming in Python runs, so they cannot drift
from it; `verify_*` run both through ONNX Runtime against torch on the same inputs. `OnnxDreaming` draws its noise
from the same torch generator, in the same order as `DreamModel.rollout`, so a seed dreams the same latents on
either backend (up to float rounding).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .errors import DreamvidError, UsageError
from .models import DreamModel, VAE

MAX_ABS_DIFF = 1e-4   # what `verify_*` allow between ONNX Runtime and torch
MAX_CELLS_DRAWN_DIFFERENTLY = 0.01   # and the share of map cells the two may draw differently (StepCheck)
VERIFY_STEPS = 8      # dream steps compared, each from the same inputs on both sides


class StepGraph(nn.Module):
    """`DreamModel.dream_step` with the state spelled out as (h, c) and the noise as inputs."""

    def __init__(self, rnn: DreamModel, decode_spread: float):
        super().__init__()
        self.rnn, self.decode_spread = rnn, decode_spread

    def forward(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor, temperature: torch.Tensor,
                *noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shown, z, (h, c) = self.rnn.dream_step(z, (h, c), temperature, noise, self.decode_spread)
        return shown, z, h, c


class DecoderGraph(nn.Module):
    """Latents -> float frames (N, S, S, 3) in [0, 1], channels last as images are stored."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).float().clamp(0, 1).permute(0, 2, 3, 1)


def zero_state(rnn: DreamModel, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The (h, c) a dream starts from with no context: zeros, (layers, batch, hidden) each."""
    zeros = torch.zeros(rnn.config.layers, batch, rnn.config.hidden)
    return zeros, zeros.clone()


def step_names(rnn: DreamModel) -> tuple[list[str], list[str]]:
    """The step graph's input and output names."""
    noise = [f"noise_{index}" for index in range(len(rnn.noise_kinds()))]
    return ["z", "h", "c", "temperature", *noise], ["shown", "next_z", "next_h", "next_c"]


def step_inputs(rnn: DreamModel, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None,
                temperature: float, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """One step's inputs, the noise drawn from `generator` as `rollout` draws it."""
    h, c = state if state is not None else zero_state(rnn, len(z))
    noise = tuple(n[0] for n in rnn.draw_noise(1, len(z), generator))
    return (z, h, c, torch.tensor(temperature, dtype=torch.float32), *noise)


def export_step(rnn: DreamModel, decode_spread: float, example: tuple[torch.Tensor, ...]) -> bytes:
    inputs, outputs = step_names(rnn)
    return _export(StepGraph(rnn, decode_spread), example, inputs, outputs, None)


def export_decoder(vae: VAE, example: torch.Tensor) -> bytes:
    batch = torch.export.Dim("n", min=1, max=4096)
    return _export(DecoderGraph(vae), (example,), ["z"], ["frames"], ({0: batch},))


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str],
            dynamic_shapes) -> bytes:
    """The ONNX bytes of `module` traced on `example`; the exporter's chatter is kept off the terminal."""
    module, logger = module.eval(), logging.getLogger("torch.onnx")
    level = logger.level
    try:
        logger.setLevel(logging.ERROR)   # it warns of every torchvision op it will not need
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, example, input_names=inputs, output_names=outputs,
                                        dynamic_shapes=dynamic_shapes, dynamo=True, verbose=False)
    except Exception as error:   # the exporter raises many kinds; all mean the same thing here
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DreamvidError(f"this model cannot be exported to ONNX: {first[:300]}",
                            "dream with torch instead (dreamvid dream), or report the preset") from None
    finally:
        logger.setLevel(level)
    return program.model_proto.SerializeToString()


def session(graph: bytes, threads: int = 0):
    """An ONNX Runtime session on the CPU: `threads` for each operator (0: one per core), which sleep when idle
    rather than spin, so that the video encoder's thread beside them gets the CPU."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@dataclass
class StepCheck:
    """How ONNX Runtime's step compares with torch's on the same inputs: the largest difference of every output
    number, leaving out map cells the two drew differently, and the share of cells drawn differently. A map
    cell is a discrete draw (inverse CDF, then MaskGIT's most-confident cut): where torch's own numbers sit
    within float rounding of a boundary, the other runtime may fall on the other side of it."""
    max_abs_diff: float = 0.0
    cells_drawn_differently: float = 0.0

    def acceptable(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.cells_drawn_differently <= MAX_CELLS_DRAWN_DIFFERENTLY


def verify_step(graph: bytes, rnn: DreamModel, decode_spread: float, start: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None, temperature: float, seed: int = 0) -> StepCheck:
    """ONNX Runtime against torch over VERIFY_STEPS steps of a dream from `start`, each step given the same
    inputs on both sides (torch's outputs are fed on)."""
    runner, graph_module = session(graph), StepGraph(rnn, decode_spread).eval()
    names = step_names(rnn)[0]
    generator = torch.Generator().manual_seed(seed)
    z, worst, different, cells = start, 0.0, 0, 0
    for _ in range(VERIFY_STEPS):
        inputs = step_inputs(rnn, z, state, temperature, generator)
        with torch.no_grad():
            expected = graph_module(*inputs)
        got = runner.run(None, {name: value.numpy() for name, value in zip(names, inputs)})
        for value, reference in zip(got, expected):
            gap = np.abs(value - reference.numpy())
            if gap.ndim == 4:   # a map (B, C, H, W): judge each cell, leaving out those drawn differently
                drawn_differently = gap.max(1) > MAX_ABS_DIFF
                different, cells = different + int(drawn_differently.sum()), cells + drawn_differently.size
                gap = np.where(drawn_differently[:, None], 0.0, gap)
            worst = max(worst, float(gap.max()))
        _, z, h, c = expected
        state = (h, c)
    return StepCheck(worst, different / cells if cells else 0.0)


def verify_decoder(graph: bytes, vae: VAE, z: torch.Tensor) -> float:
    """The largest difference between ONNX Runtime's and torch's frames for the latents `z`."""
    with torch.no_grad():
        expected = DecoderGraph(vae).eval()(z).numpy()
    return float(np.abs(session(graph).run(None, {"z": z.numpy()})[0] - expected).max())


def require_onnx() -> None:
    """A UsageError naming the missing package unless the export extra is installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise UsageError(f"ONNX needs {error.name}, which is not installed", "pip install 'dreamvid[export]'") \
            from None


class TracedStep:
    """The dream step traced by TorchScript, for one dream at a time: the same operators as `dream_step`, run
    without Python between them (the map model's step is ~60 small operators on a 16x16 map). The same latents,
    bit for bit, in two thirds of the time on the CPU (docs/benchmarks.md). Anything it was not traced for (a
    batch of dreams, feedback, another decode_spread) steps through the model itself."""

    def __init__(self, rnn: DreamModel, decode_spread: float, start: torch.Tensor):
        self.rnn, self.decode_spread = rnn, decode_spread
        example = step_inputs(rnn, start, None, rnn.config.temperature, torch.Generator().manual_seed(0))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # the tracer's notes on Python numbers it keeps as constants
            self.graph = torch.jit.trace(StepGraph(rnn, decode_spread).eval(), example, check_trace=False)

    def rollout(self, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None, steps: int,
                temperature: float, generator: torch.Generator | None = None, decode_spread: float = 1.0,
                feedback: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """As `DreamModel.rollout`."""
        if feedback is not None or decode_spread != self.decode_spread or len(z) != 1:
            return self.rnn.rollout(z, state, steps, temperature, generator, decode_spread, feedback)
        h, c = state if state is not None else zero_state(self.rnn, len(z))
        noise = self.rnn.draw_noise(steps, len(z), generator, z.device)
        temperature, shown = torch.tensor(temperature, dtype=torch.float32), []
        with torch.no_grad():
            for index in range(steps):
                latent, z, h, c = self.graph(z, h, c, temperature, *(n[index] for n in noise))
                shown.append(latent)
        return torch.stack(shown, 1), z, (h, c)


class OnnxDreaming:
    """A run's dream step and decoder as ONNX Runtime sessions, with `rollout` and `decode` as torch has them."""

    def __init__(self, vae: VAE, rnn: DreamModel, decode_spread: float, start: torch.Tensor):
        self.rnn, self.decode_spread = rnn, decode_spread
        example = step_inputs(rnn, start, None, rnn.config.temperature, torch.Generator().manual_seed(0))
        # One thread steps faster than two (many small operators), and leaves a core to the video encoder.
        self.step_session = session(export_step(rnn, decode_spread, example), threads=1)
        self.decoder_session = session(export_decoder(vae, start.repeat(2, *[1] * (start.dim() - 1))))
        self.inputs = step_names(rnn)[0]

    def rollout(self, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None, steps: int,
                temperature: float, generator: torch.Generator | None = None, decode_spread: float = 1.0,
                feedback: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """As `DreamModel.rollout`, for one dream at a time and without feedback."""
        if feedback is not None or decode_spread != self.decode_spread:
            raise ValueError("the ONNX step is traced without feedback, at the run's decode_spread")
        h, c = (t.numpy() for t in (state if state is not None else zero_state(self.rnn, len(z))))
        noise = [n.numpy() for n in self.rnn.draw_noise(steps, len(z), generator)]
        feed = {"z": z.numpy(), "h": h, "c": c, "temperature": np.array(temperature, dtype=np.float32)}
        shown = []
        for index in range(steps):
            feed.update((name, n[index]) for name, n in zip(self.inputs[4:], noise))
            latent, feed["z"], feed["h"], feed["c"] = self.step_session.run(None, feed)
            shown.append(latent)
        last = torch.from_numpy(feed["z"])
        return torch.from_numpy(np.stack(shown, 1)), last, (torch.from_numpy(feed["h"]), torch.from_numpy(feed["c"]))

    def decode(self, z: torch.Tensor) -> np.ndarray:
        """Latents (N, *latent_shape) -> uint8 (N, S, S, 3) frames."""
        frames = self.decoder_session.run(None, {"z": z.float().numpy()})[0]
        return np.round(frames * 255).astype(np.uint8)
