"""The command line itself: help, argparse errors, a lazy torch import, and a full tiny train -> dream round trip."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from dreamvid.cli import VERBS, build_parser, main
from dreamvid.config import CROPS, PRESETS
from dreamvid.video import default_upscale

ONE_LINE_USAGE_ERROR = re.compile(r"^dreamvid( \w+)?: error: .+ \(see dreamvid( \w+)? --help\)$")


def _exit_code(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def _dreamvid(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dreamvid", *argv], capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------------------------------- help


def test_help_lists_every_verb(capsys):
    code, out, err = _exit_code(capsys, "--help")
    assert code == 0 and err == ""
    assert out.startswith("usage: dreamvid")
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_verb_has_help(capsys, verb):
    code, out, err = _exit_code(capsys, verb, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: dreamvid {verb}")


def test_choices_offered_are_the_ones_config_defines():
    verbs = next(action for action in build_parser()._actions if action.dest == "verb").choices
    options = {(verb, action.dest): action.choices for verb in ("train", "demo") for action in verbs[verb]._actions}
    assert list(options["train", "preset"]) == list(options["demo", "preset"]) == list(PRESETS)
    assert list(options["train", "crop"]) == list(CROPS)


# ---------------------------------------------------------------------------------------------- argparse errors


@pytest.mark.parametrize("argv, words", [
    ((), "required: verb"),
    (("dreem", "runs/a"), "invalid choice: 'dreem'"),
    (("train", "clip.mp4"), "required: -o/--out"),
    (("train", "clip.mp4", "-o", "run", "--fps", "0"), "must be a positive number"),
    (("train", "clip.mp4", "-o", "run", "--preset", "huge"), "invalid choice: 'huge'"),
    (("dream", "run", "--frames", "ten"), "invalid int value: 'ten'"),
    (("dream", "run", "--frames", "5", "--seconds", "2"), "not allowed with argument"),
])
def test_argparse_errors_exit_2_with_one_line(capsys, argv, words):
    code, out, err = _exit_code(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ONE_LINE_USAGE_ERROR.match(lines[0]), err
    assert words in lines[0]


def test_process_argparse_error_is_one_line():
    done = _dreamvid("train", "clip.mp4")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and ONE_LINE_USAGE_ERROR.match(done.stderr.strip()), done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------- startup


def test_doctor_names_what_a_bug_report_needs(capsys):
    import dreamvid
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    facts = dict(line.split(None, 1) for line in lines if not line.startswith(("python", "cpu", "bf16", "data")))
    assert facts["dreamvid"] == dreamvid.__version__
    assert [line.split(None, 1)[1] for line in lines if line.startswith("data-parallel")] == ["gloo"]   # a CPU build
    assert facts["av"] == av.__version__ and "libavcodec" in facts["ffmpeg"]
    assert facts["device"] == "cpu" and facts["websockets"] != "not installed"


def test_process_help_is_quick():
    started = time.perf_counter()
    done = _dreamvid("--help")
    elapsed = time.perf_counter() - started
    assert done.returncode == 0 and done.stdout.startswith("usage: dreamvid"), done.stderr
    assert elapsed < 2.0, f"dreamvid --help took {elapsed:.2f} s"  # the real figure lives in benchmarks/


def test_cli_import_does_not_import_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import dreamvid.cli"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "dreamvid.cli" in modules
    assert "torch" not in modules and not any(m.startswith("torch.") for m in modules)


# ---------------------------------------------------------------------------------------------- round trip


def _read_back(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) as PyAV decodes them; a folder is read as its frame_%06d.png sequence."""
    source = str(path / "frame_%06d.png") if path.is_dir() else str(path)
    with av.open(source) as container:
        frames = list(container.decode(video=0))
    return len(frames), frames[0].width, frames[0].height


def test_train_then_dream_every_format(cli_run, tmp_path, capsys):
    # training went through `dreamvid train` in the fixture
    assert f"trained {cli_run.path}" in cli_run.stdout and "Traceback" not in cli_run.stderr
    side = 32 * default_upscale(32)  # the tiny preset's 32 px frames, upscaled so the short side is >= 256
    assert side >= 256
    for name in ("dream.mp4", "dream.webm", "dream.gif", "frames"):
        target = tmp_path / name
        code = main(["dream", str(cli_run.path), "--frames", "30", "-o", str(target), "--quiet"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "Traceback" not in err
        assert out.strip() == f"wrote {target}  (30 frames)"
        assert _read_back(target) == (30, side, side), name
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:06d}.png" for i in range(30)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dream.gif", "dream.mp4", "dream.webm", "frames"]
    code = main(["dream", str(cli_run.path), "--frames", "12", "--reproject", "-o", str(tmp_path / "r.mp4"),
                 "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err and _read_back(tmp_path / "r.mp4") == (12, side, side)
