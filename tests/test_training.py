"""dreamvid.training end to end on tiny synthetic clips: the run folder, determinism, resume, budget, best epoch;
and the stage loop's parts on their own."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import dreamvid
from dreamvid import checkpoint
from dreamvid.config import PRESETS
from dreamvid.errors import Interrupted
from dreamvid.rundir import RunDir
from dreamvid.training.control import Budget, Cadence, Stop, StopRequest, step_generator
from dreamvid.training.loop import StageLoop, TrainState
from dreamvid.training.reporting import Reporter
from dreamvid.training.rnn_stage import window_starts
from synthetic import make_video

TINY = dict(preset="tiny", progress=False, device="cpu")  # determinism is promised on CPU
PROGRESS_KEYS = {"stage", "epoch", "step", "elapsed_s", "finished", "interrupted", "error"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=90, width=48, height=48)


@pytest.fixture(scope="module")
def tiny_run(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    dreamvid.train(clip, out, vae_epochs=2, rnn_epochs=2, **TINY)
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {f"{model}.{k}": v for model in ("vae", "rnn")
            for k, v in checkpoint.load_tensors(RunDir(run).weights_path(model)).items()}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _interrupt_after(stage: str, events: int, stop: threading.Event):
    """An on_event callback that asks training to stop after `events` steps of `stage`."""
    seen = []

    def callback(event):
        if event["stage"] == stage:
            seen.append(event)
            if len(seen) == events:
                stop.set()
    return callback


def test_run_folder_holds_config_weights_logs_and_previews(tiny_run):
    run = RunDir(tiny_run)
    for path in (run.config_path, run.weights_path("vae"), run.weights_path("rnn"), run.latents_path, run.log_path,
                 run.preview_path("reconstruction.png"), run.preview_path("dream.png"),
                 run.preview_path("losses.png"), run.optimizer_path("vae"), run.optimizer_path("rnn"),
                 run.state_path, run.progress_path):
        assert path.is_file(), path
    log = run.read_log()
    assert [(r["stage"], r["epoch"]) for r in log] == [("vae", 0), ("vae", 1), ("rnn", 0), ("rnn", 1)]
    assert all(r["val_loss"] is not None and r["train_loss"] is not None for r in log)
    assert run.read_state()["stage"] == "done"
    progress = run.read_progress()
    assert PROGRESS_KEYS <= set(progress) and progress["finished"] and not progress["interrupted"]
    latents = run.load_latents()
    side = 32 // 4  # the tiny preset's 32 px frames as a map of 4x4-pixel cells, one channel per FSQ level set
    assert latents["mu"].shape == (90, 2, side, side) and latents["sequences"].tolist() == [[0, 90]]
    assert "logvar" not in latents  # codes, not a Gaussian posterior


def test_training_is_deterministic_for_a_seed(clip, tiny_run, tmp_path):
    dreamvid.train(clip, tmp_path / "again", vae_epochs=2, rnn_epochs=2, **TINY)
    _assert_same_weights(tiny_run, tmp_path / "again")


@pytest.mark.parametrize("stage, after_events", [("vae", 5), ("rnn", 3)])
def test_resume_after_interrupt_equals_an_uninterrupted_run(clip, tiny_run, tmp_path, stage, after_events):
    stop, out, progress = threading.Event(), tmp_path / "run", []
    callback = _interrupt_after(stage, after_events, stop)

    def watch(event):
        callback(event)
        progress.append(RunDir(out).read_progress())

    with pytest.raises(Interrupted, match="--resume"):
        dreamvid.train(clip, out, vae_epochs=2, rnn_epochs=2, on_event=watch, stop=stop, **TINY)
    # What the studio reads: where training is while it runs, and that it stopped, resumable.
    assert PROGRESS_KEYS | {"fraction", "eta_s", "loss"} <= set(progress[0])
    stopped = RunDir(out).read_progress()
    assert stopped["interrupted"] and not stopped["finished"] and stopped["stage"] == stage
    dreamvid.train(out=out, resume=True, progress=False, device="cpu")
    _assert_same_weights(tiny_run, out)
    assert RunDir(out).read_progress()["finished"]


def test_the_default_cell_with_dropout_resumes_to_the_uninterrupted_result(clip, tmp_path):
    tiny = PRESETS["tiny-vector"]()
    config = replace(tiny, rnn=replace(tiny.rnn, cell="lnlstm", dropout=0.3))  # `vector`'s RNN
    dreamvid.train(clip, tmp_path / "whole", vae_epochs=1, rnn_epochs=3, **{**TINY, "preset": config})
    stop = threading.Event()
    with pytest.raises(Interrupted):
        dreamvid.train(clip, tmp_path / "resumed", vae_epochs=1, rnn_epochs=3, stop=stop,
                       on_event=_interrupt_after("rnn", 2, stop), **{**TINY, "preset": config})
    dreamvid.train(out=tmp_path / "resumed", resume=True, progress=False, device="cpu")
    _assert_same_weights(tmp_path / "whole", tmp_path / "resumed")
    assert any(key.startswith("rnn.lnlstm.") for key in _weights(tmp_path / "whole"))
    frames = dreamvid.load(tmp_path / "resumed", device="cpu").dream(frames=12, seed=1)
    assert np.asarray(list(frames)).shape == (12, 32, 32, 3)


def test_ctrl_c_saves_and_prints_the_resume_command(clip, tmp_path):
    out = RunDir(tmp_path / "run")
    process = subprocess.Popen([sys.executable, "-m", "dreamvid", "train", str(clip), "-o", str(out.path),
                                "--preset", "tiny", "--vae-epochs", "400", "--rnn-epochs", "1", "--quiet"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not out.state_path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"dreamvid train -o {out.path} --resume" in stderr and "Traceback" not in stderr
    assert out.weights_path("vae").is_file() and out.optimizer_path("vae").is_file()
    assert out.read_progress()["interrupted"]


def test_several_sources_stay_separate_sequences(tmp_path):
    a = make_video(tmp_path / "a.mp4", n_frames=60, width=32, height=32, seed=1)
    b = make_video(tmp_path / "b.mkv", n_frames=50, width=40, height=32, seed=2)
    dreamvid.train([a, b], tmp_path / "run", vae_epochs=1, rnn_epochs=1, **TINY)
    dreamer = dreamvid.load(tmp_path / "run", device="cpu")
    sequences = dreamer.latents["sequences"].tolist()
    assert sequences == [[0, 60], [60, 110]]
    train_ranges = [tuple(r) for r in dreamer.latents["train"].tolist()]
    seq_len = dreamer.config.rnn.seq_len
    for offset in range(seq_len):
        for start in window_starts(train_ranges, seq_len, offset):
            assert any(a <= start and start + seq_len + 1 <= b for a, b in train_ranges)


def test_time_budget_is_respected_and_split_between_the_stages(clip, tmp_path):
    started = time.monotonic()
    dreamvid.train(clip, tmp_path / "run", minutes=0.1, **TINY)
    assert time.monotonic() - started < 6 + 20  # 6 s budget; the rest is decoding, encoding and saving
    run = RunDir(tmp_path / "run")
    assert run.weights_path("rnn").is_file()
    log = run.read_log()
    vae_s = 0.6 * 6  # the tiny preset's split: 60% of the budget for the VAE
    assert max(r["elapsed_s"] for r in log if r["stage"] == "vae") < vae_s + 3
    assert min(r["elapsed_s"] for r in log if r["stage"] == "rnn") >= vae_s


def _rnn_val_losses(run: Path) -> list[float]:
    return [record["val_loss"] for record in RunDir(run).read_log() if record["stage"] == "rnn"]


def test_keep_best_ends_with_the_lowest_validation_epoch_and_survives_resume(clip, tmp_path):
    tiny = PRESETS["tiny"]()
    # A learning rate this high makes the held-out NLL bounce (at 0.05 it fell for 8 epochs on one machine's
    # arithmetic and bounced on another's); training ends at the epoch of the first bounce, so the best epoch is
    # not the last one.
    bouncy = replace(tiny, rnn=replace(tiny.rnn, lr=0.2, keep_best=False))
    best = replace(bouncy, rnn=replace(bouncy.rnn, keep_best=True))
    dreamvid.train(clip, tmp_path / "last", vae_epochs=1, rnn_epochs=12, **{**TINY, "preset": bouncy})
    last_losses = _rnn_val_losses(tmp_path / "last")
    bounces = [i for i in range(1, len(last_losses)) if last_losses[i] > min(last_losses[:i])]
    assert bounces, last_losses
    epochs = bounces[0] + 1
    dreamvid.train(clip, tmp_path / "best", vae_epochs=1, rnn_epochs=epochs, **{**TINY, "preset": best})
    losses = _rnn_val_losses(tmp_path / "best")
    assert losses == last_losses[:epochs]
    best_epoch = int(np.argmin(losses))
    assert best_epoch < len(losses) - 1, losses
    # Training the same run only up to the best epoch gives exactly the weights keep_best ended with.
    dreamvid.train(clip, tmp_path / "upto", vae_epochs=1, rnn_epochs=best_epoch + 1,
                   **{**TINY, "preset": bouncy})
    _assert_same_weights(tmp_path / "best", tmp_path / "upto")
    assert not all(torch.equal(a, b) for a, b in zip(_weights(tmp_path / "best").values(),
                                                    _weights(tmp_path / "last").values()))

    # Interrupted after the best epoch and resumed: the best weights were saved and still win.
    stop = threading.Event()

    def interrupt_late(event):
        if event["stage"] == "rnn" and event["epoch"] == len(losses) - 2:
            stop.set()

    with pytest.raises(Interrupted):
        dreamvid.train(clip, tmp_path / "resumed", vae_epochs=1, rnn_epochs=epochs, on_event=interrupt_late,
                       stop=stop, **{**TINY, "preset": best})
    dreamvid.train(out=tmp_path / "resumed", resume=True, progress=False, device="cpu")
    _assert_same_weights(tmp_path / "best", tmp_path / "resumed")


# ---------------------------------------------------------------------------------------------- the loop's parts


def test_budget_windows_split_the_clock_and_carry_time_across_a_resume():
    assert Budget(100, 0.9).window("vae") == (0.0, 90.0) and Budget(100, 0.9).window("rnn") == (90.0, 100)
    assert Budget(None, 0.6).window("vae") is None and not Budget(None, 0.6).spent("rnn")
    resumed = Budget(100, 0.6, elapsed=70)
    assert resumed.elapsed() >= 70 and resumed.spent("vae") and not resumed.spent("rnn")
    assert 0.25 <= resumed.fraction("rnn") < 0.3


def test_step_generators_repeat_for_the_same_keys_and_only_for_them():
    draw = lambda *keys: torch.rand(4, generator=step_generator(0, *keys))  # noqa: E731
    assert torch.equal(draw("vae", 1, 2), draw("vae", 1, 2))
    assert not torch.equal(draw("vae", 1, 2), draw("vae", 2, 1)) and not torch.equal(draw("vae", 1), draw("rnn", 1))


class _CountingStage:
    """The smallest stage: two epochs of three steps, recording what the loop asked of it."""

    name, epochs, steps_per_epoch = "vae", 2, 3

    def __init__(self, on_step=lambda: None):
        self.steps, self.ended, self.on_step = [], 0, on_step

    def begin_epoch(self, epoch: int) -> int:
        return self.steps_per_epoch

    def train_step(self, epoch: int, step: int) -> dict[str, float]:
        self.steps.append((epoch, step))
        self.on_step()
        return {"loss": 1.0}

    def end_epoch(self) -> float:
        self.ended += 1
        return 0.5

    def save(self) -> None:
        pass

    def preview(self) -> None:
        pass


def _loop(tmp_path, state: TrainState, budget: Budget, stop: threading.Event) -> StageLoop:
    run = RunDir(tmp_path / "run").create()
    reporter = Reporter(run, state, budget, False, None)
    return StageLoop(state, budget, StopRequest(stop), reporter, Cadence(), lambda: None)


def test_the_loop_says_why_it_stopped_and_resumes_where_it_did(tmp_path):
    stop = threading.Event()
    stage = _CountingStage(on_step=lambda: len(stage.steps) == 4 and stop.set())
    state = TrainState()
    assert _loop(tmp_path / "a", state, Budget(None, 0.6), stop).run(stage) is Stop.INTERRUPTED
    assert stage.steps == [(0, 0), (0, 1), (0, 2), (1, 0)] and (state.epoch, state.step) == (1, 1)
    stop.clear()
    assert _loop(tmp_path / "b", state, Budget(None, 0.6), stop).run(stage) is Stop.FINISHED
    assert stage.steps[4:] == [(1, 1), (1, 2)] and stage.ended == 2 and state.epoch == 2
    spent = _CountingStage()
    assert _loop(tmp_path / "c", TrainState(), Budget(1.0, 0.6, elapsed=1.0), stop).run(spent) is Stop.BUDGET
    assert spent.steps == [] and spent.ended == 0
