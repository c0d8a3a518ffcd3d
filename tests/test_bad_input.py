"""The bad-input matrix (issue 2, section 8), driven through the real CLI.

Every case asserts the exit code (2 usage error, 1 failure), that stderr is one line `dreamvid: error: ...`
naming the problem (and the fix where there is one), that no traceback reaches the user, and that nothing the
user owns was changed. Most cases call `dreamvid.cli.main` in-process; a few run `python -m dreamvid` for real.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY, copy_run
from dreamvid.cache import minimum_frames
from dreamvid.cli import main
from dreamvid.errors import UsageError
from synthetic import (make_video, write_audio, write_frameless_video, write_solid_video, write_timed_video)

TINY_MIN_FRAMES = minimum_frames(8)  # the tiny preset's RNN window is 8 frames


# ---------------------------------------------------------------------------------------------- helpers


def cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(code: int, err: str, expected: int, *words: str) -> str:
    """One line `dreamvid: error: ...` on stderr containing each of `words` (case-insensitive); returns it."""
    assert code == expected, f"exit {code}, expected {expected}; stderr: {err}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    line = lines[0]
    assert line.startswith("dreamvid: error: "), line
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` (or the file itself) with a digest of its bytes."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path) if p != path else p.name): hashlib.sha256(p.read_bytes()).digest()
            for p in files}


def train_into(tmp_path: Path, *sources: Path | str, extra: tuple[str, ...] = ()) -> list[str]:
    return ["train", *map(str, sources), "-o", str(tmp_path / "run"), *TINY, *extra]


def assert_trained(run: Path) -> None:
    for name in ("config.json", "vae.safetensors", "rnn.safetensors", "latents.safetensors"):
        assert (run / name).is_file(), name


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# ---------------------------------------------------------------------------------------------- sources


def test_nonexistent_source(tmp_path, capsys):
    code, _, err = cli(capsys, *train_into(tmp_path, tmp_path / "nope.mp4"))
    assert_error(code, err, 2, "nope.mp4", "does not exist", "check the path")
    assert not (tmp_path / "run").exists()  # nothing created for a typo


def test_directory_as_source(tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    make_video(folder / "a.mp4", n_frames=4, width=32, height=32)
    before = snapshot(folder)
    code, _, err = cli(capsys, *train_into(tmp_path, folder))
    assert_error(code, err, 2, "clips", "is a directory", "pass a video file")
    assert snapshot(folder) == before


def test_text_file_named_mp4(tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("shopping list: milk, eggs\n")
    code, _, err = cli(capsys, *train_into(tmp_path, fake))
    assert_error(code, err, 1, "notes.mp4", "not a video", "check that the file")
    assert fake.read_text() == "shopping list: milk, eggs\n"


def test_truncated_mp4_trains_on_what_decodes_and_warns(tmp_path, capsys):
    whole = make_video(tmp_path / "whole.mp4", n_frames=100, width=48, height=48,
                       container_options={"movflags": "+faststart"})  # index first: half the file still opens
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    code, out, err = cli(capsys, *train_into(tmp_path, cut))
    assert code == 0, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dreamvid: warning: "), err
    assert "cut.mp4" in lines[0] and "truncated" in lines[0]
    assert "trained" in out
    assert_trained(tmp_path / "run")
    frames = json.loads(next((tmp_path / "run" / "cache").glob("*/index.json")).read_text())["sequences"][0]
    assert TINY_MIN_FRAMES <= frames["stop"] - frames["start"] < 100
    assert cut.read_bytes() == data[: len(data) // 2]


def test_truncated_too_far_fails_with_the_minimum(tmp_path, capsys):
    whole = make_video(tmp_path / "whole.mp4", n_frames=24, width=48, height=48,
                       container_options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])  # a few frames still decode
    code, _, err = cli(capsys, *train_into(tmp_path, cut))
    assert code == 1, err
    lines = err.strip().splitlines()  # the warning about the cut, then the error
    assert [line.split(":")[1].strip() for line in lines] == ["warning", "error"], err
    assert f"at least {TINY_MIN_FRAMES}" in lines[-1] and "Traceback" not in err


def test_audio_only_file(tmp_path, capsys):
    audio = write_audio(tmp_path / "song.m4a")
    code, _, err = cli(capsys, *train_into(tmp_path, audio))
    assert_error(code, err, 1, "song.m4a", "no video stream", "not only audio")


def test_zero_frame_video(tmp_path, capsys):
    empty = write_frameless_video(tmp_path / "empty.mkv")
    code, _, err = cli(capsys, *train_into(tmp_path, empty))
    assert_error(code, err, 1, "empty.mkv", "no decodable video frames")
    assert not (tmp_path / "run" / "config.json").exists()  # a later attempt needs no --force


@pytest.mark.parametrize("frames", [1, 6])
def test_too_few_frames_states_the_minimum(tmp_path, capsys, frames):
    clip = make_video(tmp_path / "short.mp4", n_frames=frames, width=48, height=48)
    code, _, err = cli(capsys, *train_into(tmp_path, clip))
    line = assert_error(code, err, 1, "short.mp4", f"at least {TINY_MIN_FRAMES}", "longer clip")
    assert f"gives {frames} frame" in line
    assert not (tmp_path / "run" / "config.json").exists()


def test_odd_portrait_size_trains(tmp_path, capsys):
    clip = make_video(tmp_path / "portrait.mp4", n_frames=20, width=333, height=777, pix_fmt="yuv444p")
    code, out, err = cli(capsys, *train_into(tmp_path, clip))
    assert code == 0 and err == "", err
    assert_trained(tmp_path / "run")


def test_4k_input_is_streamed(tmp_path, capsys):
    clip = write_solid_video(tmp_path / "uhd.mp4", n_frames=TINY_MIN_FRAMES + 1, width=3840, height=2160)
    code, out, err = cli(capsys, *train_into(tmp_path, clip))
    assert code == 0 and err == "", err
    cache = next((tmp_path / "run" / "cache").glob("*/frames.u8"))
    assert cache.stat().st_size == (TINY_MIN_FRAMES + 1) * 32 * 32 * 3  # stored at 32 px, never at 4K


def test_variable_frame_rate_trains(tmp_path, capsys):
    rng = np.random.default_rng(0)
    times = np.concatenate([[0.0], np.cumsum(rng.uniform(1 / 60, 1 / 8, 39))])
    clip = write_timed_video(tmp_path / "vfr.mp4", [float(t) for t in times])
    code, out, err = cli(capsys, *train_into(tmp_path, clip))
    assert code == 0 and err == "", err
    assert_trained(tmp_path / "run")


# ---------------------------------------------------------------------------------------------- run folders


@pytest.mark.parametrize("verb", ["dream", "eval"])
def test_run_dir_that_is_not_a_run(tmp_path, capsys, verb):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, verb, empty)
    assert_error(code, err, 2, "empty", "not a dreamvid run", "dreamvid train")
    assert list(empty.iterdir()) == []

    random = tmp_path / "holiday"
    random.mkdir()
    (random / "notes.txt").write_text("beach\n")
    (random / "vae.safetensors").write_bytes(np.random.default_rng(0).bytes(512))
    before = snapshot(random)
    code, _, err = cli(capsys, verb, random)
    assert_error(code, err, 2, "holiday", "not a dreamvid run")
    assert snapshot(random) == before

    code, _, err = cli(capsys, verb, tmp_path / "missing")
    assert_error(code, err, 2, "missing", "does not exist")


def test_foreign_config_json(tmp_path, capsys):
    other = tmp_path / "webapp"
    other.mkdir()
    (other / "config.json").write_text('{"name": "my web app", "port": 8080}')
    code, _, err = cli(capsys, "dream", other)
    assert_error(code, err, 1, "config.json", "not a readable dreamvid config")


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_damaged_safetensors(cli_run, tmp_path, capsys, damage):
    run = copy_run(cli_run, tmp_path)
    weights = run / "vae.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.write_bytes(b"\xff" * 64 + data[64:])
    out_video = tmp_path / "dream.mp4"
    code, _, err = cli(capsys, "dream", run, "-o", out_video, "--frames", "10", "--quiet")
    assert_error(code, err, 1, "vae.safetensors", "damaged", "train")
    assert not out_video.exists()


@pytest.mark.parametrize("tensors, words", [
    ({"x": torch.zeros(1)}, ("memory.safetensors", "damaged", "delete it")),
    ({"code_count": torch.tensor(7), "square.keys": torch.zeros(0, dtype=torch.int64),
      "square.patches": torch.zeros(0, 48, dtype=torch.uint8), "cross.keys": torch.zeros(0, dtype=torch.int64),
      "cross.patches": torch.zeros(0, 48, dtype=torch.uint8)}, ("memory.safetensors", "does not fit")),
    ({"code_count": torch.tensor(125), "square.keys": torch.zeros(0, dtype=torch.int64),
      "square.patches": torch.zeros(0, 48, dtype=torch.uint8), "cross.keys": torch.zeros(0, dtype=torch.int64),
      "cross.patches": torch.zeros(0, 48, dtype=torch.uint8), "nearest.windows": torch.zeros(1, 2, 2, 3,
                                                                                             dtype=torch.uint8)},
     ("memory.safetensors", "damaged", "delete it")),
])
def test_a_foreign_patch_memory(cli_run, tmp_path, capsys, tensors, words):
    run = copy_run(cli_run, tmp_path)
    save_file(tensors, str(run / "memory.safetensors"))
    out_video = tmp_path / "dream.mp4"
    code, _, err = cli(capsys, "dream", run, "-o", out_video, "--frames", "10", "--quiet")
    assert_error(code, err, 1, *words)
    assert not out_video.exists()


def test_missing_rnn_weights(cli_run, tmp_path, capsys):
    run = copy_run(cli_run, tmp_path)
    (run / "rnn.safetensors").unlink()
    code, _, err = cli(capsys, "dream", run, "--frames", "10", "--quiet")
    assert_error(code, err, 1, "not finished training", "--resume")


@pytest.mark.parametrize("edit, words", [
    ({"preset": "hyperdream"}, ("hyperdream", "retrain")),
    ({"format": 99}, ("format 99", "retrain")),
    ({"vae": {"channels": [16]}}, ("vae.safetensors", "does not fit", "another preset or version", "train it again")),
    ({"rnn": {"decode_spread": 2}}, ("not a readable dreamvid config", "decode_spread must be from 0 to 1")),
    ({"rnn": {"cell": "rwkv"}}, ("not a readable dreamvid config", "rnn.cell must be one of lstm, lnlstm")),
    ({"rnn": {"width": 16}}, ("rnn.safetensors", "does not fit")),
    ({"vae": {"levels": [1]}}, ("not a readable dreamvid config", "vae.levels")),
    # Settings of 0.1.0 that 0.2.0 retired: a non-default value names the version that had it.
    ({"vae": {"grid": 8}}, ("config.json sets vae.grid = 8, a setting of dreamvid 0.1.0 (commit 7160bca) "
                            "that this version (0.3.0) retired; retrain the run with this version, or dream it "
                            "with dreamvid 0.1.0",)),
    ({"rnn": {"cell": "gru"}}, ('sets rnn.cell = "gru"', "dreamvid 0.1.0", "retired")),
    ({"rnn": {"input_noise": 0.05}}, ("sets rnn.input_noise = 0.05", "dreamvid 0.1.0", "retired")),
])
def test_run_from_another_preset_or_version(cli_run, tmp_path, capsys, edit, words):
    run = copy_run(cli_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    for key, value in edit.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (run / "config.json").write_text(json.dumps(config))
    before = snapshot(run)
    code, _, err = cli(capsys, "dream", run, "--frames", "10", "--quiet")
    assert_error(code, err, 1, *words)
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------- dream options


@pytest.mark.parametrize("temperature", ["0", "-1"])
def test_temperature_must_be_positive(cli_run, tmp_path, capsys, temperature):
    out_video = tmp_path / "dream.mp4"
    code, _, err = cli(capsys, "dream", cli_run.path, "-o", out_video, "--temperature", temperature, "--quiet")
    assert_error(code, err, 2, "temperature must be positive", "--temperature 1.0")
    assert not out_video.exists()


@pytest.mark.parametrize("frames", ["-5", "0"])
def test_frames_must_be_positive(cli_run, tmp_path, capsys, frames):
    out_video = tmp_path / "dream.mp4"
    code, _, err = cli(capsys, "dream", cli_run.path, "-o", out_video, "--frames", frames, "--quiet")
    assert_error(code, err, 2, "frames", f"got {frames}")
    assert not out_video.exists()


def test_unwritable_output_path(cli_run, tmp_path, capsys):
    blocker = tmp_path / "taxes.pdf"  # a file where a folder should be: unwritable even for root
    blocker.write_bytes(b"%PDF-1.4 precious")
    code, _, err = cli(capsys, "dream", cli_run.path, "-o", blocker / "dream.mp4", "--frames", "5", "--quiet")
    assert_error(code, err, 1, "cannot write", "taxes.pdf", "choose another -o")
    code, _, err = cli(capsys, *train_into(tmp_path, cli_run.clip)[:2], "-o", blocker / "run", *TINY)
    assert_error(code, err, 1, "cannot create run folder", "choose a writable -o")
    assert blocker.read_bytes() == b"%PDF-1.4 precious"


def test_existing_output_refused_then_replaced_with_force(cli_run, tmp_path, capsys):
    target = tmp_path / "keep.mp4"
    make_video(target, n_frames=3, width=32, height=32)
    before = target.read_bytes()
    args = ("dream", cli_run.path, "-o", target, "--frames", "12", "--quiet")
    code, _, err = cli(capsys, *args)
    assert_error(code, err, 2, "keep.mp4", "exists", "--force")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]  # no temporary file left behind

    code, out, err = cli(capsys, *args, "--force")
    assert code == 0 and "Traceback" not in err, err
    assert target.read_bytes() != before and frame_count(target) == 12
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_existing_png_frames_refused_then_replaced_keeping_other_files(cli_run, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "frame_000000.png").write_bytes(b"old frame")
    (folder / "README.txt").write_text("mine")
    before = snapshot(folder)
    args = ("dream", cli_run.path, "-o", folder, "--frames", "4", "--quiet")
    code, _, err = cli(capsys, *args)
    assert_error(code, err, 2, "frame_*.png", "--force")
    assert snapshot(folder) == before

    code, _, err = cli(capsys, *args, "--force")
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt"] + [f"frame_{i:06d}.png" for i in range(4)]
    assert (folder / "README.txt").read_text() == "mine"

    notes = tmp_path / "notes"  # a suffix-less file is not a PNG folder to write into
    notes.write_text("mine too")
    code, _, err = cli(capsys, "dream", cli_run.path, "-o", notes, "--frames", "4", "--quiet", "--force")
    assert_error(code, err, 2, "is a file, not a folder")
    assert notes.read_text() == "mine too"


# ---------------------------------------------------------------------------------------------- train into a run


def test_resume_on_a_non_run(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "missing"):
        code, _, err = cli(capsys, "train", "-o", target, "--resume", "--quiet")
        assert_error(code, err, 2, "not a dreamvid run", "nothing to resume", "drop --resume")
    assert list(empty.iterdir()) == [] and not (tmp_path / "missing").exists()


def test_train_into_an_existing_run_is_refused(cli_run, tmp_path, capsys):
    run = copy_run(cli_run, tmp_path)
    before = snapshot(run)
    code, _, err = cli(capsys, "train", cli_run.clip, "-o", run, *TINY)
    assert_error(code, err, 2, "already holds a run", "--resume", "--force")
    assert snapshot(run) == before


def test_force_with_a_bad_source_keeps_the_run(cli_run, tmp_path, capsys):
    """A typo in SOURCE must not cost the run that --force would replace: sources are checked first."""
    run = copy_run(cli_run, tmp_path)
    before = snapshot(run)
    code, _, err = cli(capsys, "train", tmp_path / "typo.mp4", "-o", run, *TINY, "--force")
    assert_error(code, err, 2, "typo.mp4", "does not exist")
    code, _, err = cli(capsys, "train", cli_run.clip, "-o", run, *TINY, "--force", "--size", "48")
    assert_error(code, err, 2, "--size 48", "use one of")
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------- --debug


def test_debug_raises_the_exception(tmp_path):
    with pytest.raises(UsageError, match="not a dreamvid run"):
        main(["--debug", "dream", str(tmp_path)])


# ---------------------------------------------------------------------------------------------- real processes


def _dreamvid(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dreamvid", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_process_failure_exits_1_without_traceback(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video")
    done = _dreamvid("train", fake, "-o", tmp_path / "run", *TINY, cwd=tmp_path)
    assert_error(done.returncode, done.stderr, 1, "clip.mp4", "not a video")
    assert done.stdout == ""


def test_process_usage_error_exits_2_without_traceback(cli_run, tmp_path):
    done = _dreamvid("dream", cli_run.path, "-o", tmp_path / "d.mp4", "--temperature", "0", cwd=tmp_path)
    assert_error(done.returncode, done.stderr, 2, "temperature must be positive")
    assert not (tmp_path / "d.mp4").exists()


def test_process_debug_shows_the_traceback(tmp_path):
    done = _dreamvid("--debug", "train", tmp_path / "nope.mp4", "-o", tmp_path / "run", cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "UsageError" in done.stderr and "nope.mp4 does not exist" in done.stderr


# ---------------------------------------------------------------------------------------------- bounded inputs


def test_a_playlist_naming_a_real_video_is_refused_unread(tmp_path, capsys):
    clip = make_video(tmp_path / "clip.mp4", n_frames=30)
    for name, text in (("list.m3u8", f"#EXTM3U\n#EXTINF:1.0,\n{clip}\n#EXT-X-ENDLIST\n"),
                       ("list.ffconcat", f"ffconcat version 1.0\nfile '{clip}'\n")):
        playlist = tmp_path / name
        playlist.write_text(text)
        code, _, err = cli(capsys, *train_into(tmp_path, playlist))
        assert_error(code, err, 1, "not a video FFmpeg can read")
        assert not (tmp_path / "run").exists()


def test_the_frames_read_from_a_file_are_capped_by_its_declared_length():
    from dreamvid.video import MAX_FRAMES, VideoInfo, frame_limit
    info = VideoInfo(path=Path("clip.mp4"), width=64, height=64, fps=30.0, frames=None, duration=10.0, codec="h264")
    assert frame_limit(info, 15.0) == int(10.0 * 15 * 1.1) + 30 + 2
    assert frame_limit(replace(info, duration=None), 15.0) == MAX_FRAMES
    assert frame_limit(replace(info, duration=1e9), 15.0) == MAX_FRAMES


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB file system (tmpfs), where mounting one is allowed (root, as CI runs)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("mounting a small file system needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_disk_without_room_for_the_frame_cache_is_refused_before_decoding(tmp_path, small_disk, capsys):
    clip = make_video(tmp_path / "clip.mp4", n_frames=30)
    code, _, err = cli(capsys, "train", clip, "-o", small_disk / "run", *TINY)
    assert_error(code, err, 1, "not enough disk space for the frame cache", "free")
    assert not list(small_disk.rglob("*.u8")) and not list(small_disk.rglob("*.part"))
