"""Runs survive what ends a process or fills a disk: real `dreamvid train` processes, killed with SIGKILL at random
moments (checkpoint writes included) and resumed, and held to a file-size limit so that a write fails."""
from __future__ import annotations

import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

import dreamvid
from dreamvid.checkpoint import file_digest
from dreamvid.rundir import RunDir
from synthetic import make_video

KILLS = 12


def train_argv(clip: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dreamvid", "train", str(clip), "-o", str(run), "--preset", "tiny", "--quiet",
            *extra]


def assert_every_file_whole(run: Path) -> None:
    """Whatever a kill left: every weights file that exists reads as safetensors, no temporary file poses as one."""
    for path in run.rglob("*.safetensors"):
        load_file(str(path))
    if (run / "state" / "train_state.json").exists():
        RunDir(run).read_state()


def assert_last_commit(run: Path) -> None:
    """After `settle_checkpoint`, the checkpoint files are exactly the ones the last commit recorded."""
    folder = RunDir(run)
    folder.settle_checkpoint()
    recorded = folder.read_state()["files"]
    present = {str(p.relative_to(run)): file_digest(p) for p in folder.checkpoint_paths() if p.is_file()}
    assert present == recorded


def test_training_killed_at_random_moments_resumes_to_a_run_that_loads(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=60, width=32, height=32)
    run, rng = tmp_path / "run", random.Random(0)
    for _ in range(KILLS):
        resume = ("--resume",) if RunDir(run).state_path.is_file() else ("--force",)
        process = subprocess.Popen(train_argv(clip, run, "--vae-epochs", "40", "--rnn-epochs", "40", *resume),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.5))   # after the imports: inside training and its checkpoint writes
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert_every_file_whole(run)
        if RunDir(run).state_path.is_file():
            assert_last_commit(run)   # the previous checkpoint or the new one, never a mix
    print(f"\nkill -9: {KILLS} trials, every file whole after each")
    finished = subprocess.run(train_argv(clip, run, "--vae-epochs", "40", "--rnn-epochs", "40", "--resume"),
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    frames = np.stack(list(dreamvid.load(run, device="cpu").dream(frames=4, seed=0)))
    assert frames.shape == (4, 32, 32, 3)


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_write_past_the_disk_leaves_the_last_checkpoint_and_says_so_in_one_line(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=24, width=32, height=32)
    run = tmp_path / "run"
    # Room for the frame cache (72 KB), the config and the VAE's files, not for the dream model's weights.
    limit = 80 * 1024
    failed = subprocess.run(train_argv(clip, run, "--vae-epochs", "2", "--rnn-epochs", "2"), capture_output=True,
                            text=True, timeout=300, preexec_fn=_limit_file_size(limit))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    line, = failed.stderr.strip().splitlines()
    assert line.startswith("dreamvid: error: cannot write") and "file too large" in line
    assert_every_file_whole(run)
    assert not list(run.rglob("*.tmp"))
    state = RunDir(run).read_state()
    assert state["stage"] in ("vae", "encode", "rnn")   # a committed checkpoint before the write that failed
    resumed = subprocess.run(train_argv(clip, run, "--vae-epochs", "2", "--rnn-epochs", "2", "--resume"),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert np.stack(list(dreamvid.load(run, device="cpu").dream(frames=2, seed=0))).shape == (2, 32, 32, 3)


def test_a_frame_cache_past_the_disk_is_refused_in_one_line_and_removed(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=60, width=64, height=64)
    failed = subprocess.run(train_argv(clip, tmp_path / "run", "--size", "64", "--vae-epochs", "1",
                                       "--rnn-epochs", "1"),
                            capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(200_000))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    line, = failed.stderr.strip().splitlines()
    assert "cannot write the frame cache" in line
    assert not [p for p in (tmp_path / "run" / "cache").rglob("*") if p.is_file()]


def test_weights_written_after_the_last_commit_are_undone_by_resume(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=24, width=32, height=32)
    run = tmp_path / "run"
    subprocess.run(train_argv(clip, run, "--vae-epochs", "1", "--rnn-epochs", "1"), check=True, timeout=300)
    folder = RunDir(run)
    committed = file_digest(folder.weights_path("rnn"))
    weights = load_file(str(folder.weights_path("rnn")))
    folder.save_weights("rnn", {name: value + 1 for name, value in weights.items()})  # a kill before the commit
    assert file_digest(folder.weights_path("rnn")) != committed
    resumed = subprocess.run(train_argv(clip, run, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert file_digest(folder.weights_path("rnn")) == committed
