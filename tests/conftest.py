"""Shared fixtures: the session's one tiny run trained through the real command line."""
from __future__ import annotations

import io
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import make_video  # noqa: E402

TINY = ["--preset", "tiny", "--vae-epochs", "1", "--rnn-epochs", "1", "--quiet"]


@dataclass
class TrainedRun:
    path: Path
    clip: Path
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory) -> TrainedRun:
    """One tiny run trained with `dreamvid train`, once per session. Read-only: a test that damages a run works on
    `copy_run(...)`."""
    from dreamvid.cli import main
    root = tmp_path_factory.mktemp("cli_run")
    clip = make_video(root / "clip.mp4", n_frames=80, width=48, height=48)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["train", str(clip), "-o", str(root / "run"), *TINY])
    run = TrainedRun(root / "run", clip, code, out.getvalue(), err.getvalue())
    assert run.code == 0, run.stderr
    return run


def copy_run(run: TrainedRun, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run.path, tmp_path / "run_copy"))


def vector_default():
    """The `default` preset of dreamvid 0.1.0 to 0.3.0, World Models' models with five measured changes: the runs
    trained with it must keep loading and dreaming."""
    from dataclasses import replace
    from dreamvid.config import PRESETS, TrainConfig
    worldmodels = PRESETS["worldmodels"]()
    return replace(worldmodels, preset="default", train=TrainConfig(vae_share=0.9),
                   rnn=replace(worldmodels.rnn, cell="lnlstm", keep_best=True, decode_spread=0.5, dropout=0.3))


def old_style_config(config) -> dict:
    """`config` (a RunConfig) as dreamvid 0.1.0 wrote config.json: every retired field there, at its old default."""
    from dataclasses import asdict
    from dreamvid.config import RETIREMENTS
    raw = asdict(config)
    for section, retired in RETIREMENTS[0].fields.items():
        raw[section].update(retired)
    return {**raw, "version": "0.1.0"}
