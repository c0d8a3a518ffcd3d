"""Data-parallel training with 2 CPU processes on loopback: the same losses as one process, a run that dreams,
resume with another number of processes, Ctrl-C, a killed process, torchrun, and bad input."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dreamvid
from dreamvid.errors import UsageError
from dreamvid.models import StepBatch
from dreamvid.training.parallel import World
from synthetic import make_video

EPOCHS = ["--vae-epochs", "4", "--rnn-epochs", "4"]
LONG = ["--vae-epochs", "40", "--rnn-epochs", "2"]   # long enough to interrupt
# Two processes compute one process's loss and gradient, up to the order of float sums (measured on these runs:
# 1e-6 at most). The resumed run is compared over 160 steps, across which such differences compound (measured: up
# to 1% by the last epoch).
TOLERANCE = 1e-4
RESUMED_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=80, width=48, height=48)


def _train(clip: Path, run: Path, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dreamvid", "train", str(clip), "-o", str(run), "--quiet", *argv],
                          capture_output=True, text=True, timeout=timeout)


def _start(clip: Path, run: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dreamvid", "train", str(clip), "-o", str(run), "--quiet",
                             *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _step_losses(run: Path) -> dict[str, list[float]]:
    losses: dict[str, list[float]] = {}
    for record in _log(run):
        losses.setdefault(record["stage"], []).extend(record["step_losses"])
    return losses


def _assert_close(ours: list[float], theirs: list[float], tolerance: float) -> None:
    assert len(ours) == len(theirs) > 0
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
    assert worst <= tolerance, f"{worst:.2%}"


def _wait_for(condition, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _progress(run: Path) -> dict:
    try:
        return json.loads((run / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture(scope="module")
def one_process(clip, tmp_path_factory) -> dict[str, Path]:
    """Runs of one process (in this one: the same code as the command line's), to compare with."""
    runs = {}
    for name, preset, epochs in (("tiny", "tiny", 4), ("tiny-vector", "tiny-vector", 4), ("long", "tiny", 40)):
        runs[name] = tmp_path_factory.mktemp("one") / name
        dreamvid.train(clip, runs[name], preset=preset, vae_epochs=epochs, rnn_epochs=4 if epochs == 4 else 2,
                       device="cpu", progress=False)
    return runs


@pytest.mark.parametrize("preset", ["tiny", "tiny-vector"])
def test_two_processes_follow_one_step_by_step(clip, one_process, tmp_path, preset):
    run = tmp_path / "run"
    done = _train(clip, run, "--preset", preset, "--nproc", "2", *EPOCHS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained") == 1 and done.stderr == ""
    ours, theirs = _step_losses(run), _step_losses(one_process[preset])
    for stage in ("vae", "rnn"):
        _assert_close(ours[stage], theirs[stage], TOLERANCE)
    frames = dreamvid.load(run).dream(frames=6, seed=1)
    assert len(list(frames)) == 6


def test_resume_after_ctrl_c_with_another_nproc(clip, one_process, tmp_path):
    run = tmp_path / "run"
    process = _start(clip, run, "--preset", "tiny", "--nproc", "2", *LONG)
    _wait_for(lambda: _progress(run).get("epoch", 0) >= 3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines() == [f"dreamvid: training interrupted (SIGINT); progress saved in {run}; "
                                        f"resume with: dreamvid train -o {run} --resume"]
    stopped = json.loads((run / "state" / "train_state.json").read_text())
    assert stopped["stage"] in ("vae", "rnn") and (stopped["stage"], stopped["epoch"]) != ("vae", 0)
    dreamvid.train(out=run, resume=True, device="cpu", progress=False)   # in one process
    uninterrupted = {(r["stage"], r["epoch"]): r["val_loss"] for r in _log(one_process["long"])}
    ours = {(r["stage"], r["epoch"]): r["val_loss"] for r in _log(run)}
    assert ours.keys() == uninterrupted.keys()
    for key, value in ours.items():
        assert abs(value - uninterrupted[key]) <= RESUMED_TOLERANCE * abs(uninterrupted[key]), key


def test_a_killed_process_stops_the_others_and_the_run_resumes(clip, tmp_path):
    run = tmp_path / "run"
    process = _start(clip, run, "--preset", "tiny", "--nproc", "2", *LONG)
    _wait_for(lambda: _progress(run).get("epoch", 0) >= 2)
    workers = subprocess.run(["pgrep", "-f", f"dreamvid.training.launch.*{run}"], capture_output=True, text=True)
    os.kill(int(workers.stdout.split()[-1]), signal.SIGKILL)
    killed = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - killed < 60
    assert process.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped (killed by SIGKILL)" in lines[0] and "--resume" in lines[0], err
    dreamvid.train(out=run, resume=True, device="cpu", progress=False)
    assert len(list(dreamvid.load(run).dream(frames=4))) == 4


def test_the_line_names_the_process_that_died_not_one_that_stopped_after_it():
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    from dreamvid.training.launch import PEER_LOST, _death
    survivor = ProcessFailure(local_rank=0, pid=10, exitcode=PEER_LOST, error_file="/nonexistent")
    killed = ProcessFailure(local_rank=1, pid=11, exitcode=-signal.SIGKILL, error_file="/nonexistent")
    survivor.timestamp, killed.timestamp = 1, 2      # the survivor's exit was seen first
    line = str(_death(ChildFailedError("train", {0: survivor, 1: killed}), 2, Path("run")))
    assert line.startswith("training process 1 of 2 stopped (killed by SIGKILL)"), line


def test_torchrun_runs_the_same_job_in_one_budget(clip, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "dreamvid", "train", str(clip), "-o", str(run), "--preset", "tiny", "--quiet",
                           "--minutes", "0.05"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained") == 1
    log = _log(run)
    assert {r["stage"] for r in log} == {"vae", "rnn"}
    assert 2.5 <= log[-1]["elapsed_s"] <= 3 + 5   # both stages ended at the budget (3 s), whichever process saw it
    assert json.loads((run / "progress.json").read_text())["finished"]


def test_bad_nproc_and_port(clip, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _train(clip, tmp_path / "a", "--nproc", "2", "--port", str(port))
        assert busy.returncode == 2
        assert busy.stderr == f"dreamvid: error: port {port} is taken (address already in use); pass another " \
                              "--port, or leave it out to use a free one\n"
        bad = {"more processes than this machine's": dict(nproc=(os.cpu_count() or 1) + 1),
               "--port is where --nproc processes meet": dict(port=port + 1),
               "on_event and stop watch one process": dict(nproc=2, on_event=print)}
        for message, settings in bad.items():
            with pytest.raises(UsageError, match=message):
                dreamvid.train(clip, tmp_path / "b", preset="tiny", **settings)
    assert _train(clip, tmp_path / "c", "--nproc", "0").returncode == 2
    for out in "abc":
        assert not (tmp_path / out).exists()


def test_a_bad_source_is_told_once(tmp_path):
    failed = _train(tmp_path / "missing.mp4", tmp_path / "run", "--nproc", "2")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"dreamvid: error: {tmp_path / 'missing.mp4'} does not exist; "
                                                  "check the path"]


def test_each_process_holds_its_rows_with_the_numbers_and_sums_of_one_process():
    worlds = [World(rank, 3) for rank in range(3)]
    assert [world.part(8) for world in worlds] == [slice(0, 2), slice(2, 5), slice(5, 8)]
    assert World(1, 3).part(1) == slice(0, 0)
    whole = StepBatch(torch.Generator().manual_seed(5)).rand((8, 4, 3))
    values = torch.arange(8.0, requires_grad=True)
    gradients = torch.zeros(8)
    for world in worlds:
        rows = world.part(8)
        mine = StepBatch(torch.Generator().manual_seed(5), rows, 8, total=lambda local: values.sum().detach())
        assert torch.equal(mine.rand((rows.stop - rows.start, 4, 3)), whole[rows])
        mean = mine.mean(values[rows])
        assert mean.item() == pytest.approx(3.5)            # the whole batch's mean, in every process
        mean.backward()
    gradients = values.grad                                 # each process's rows got their share, once
    assert torch.allclose(gradients, torch.full((8,), 1 / 8))
    pairs = StepBatch(torch.Generator().manual_seed(5), slice(2, 5), 8).randint(9, (3 * 4,))
    assert torch.equal(pairs, StepBatch(torch.Generator().manual_seed(5)).randint(9, (8 * 4,))[8:20])
