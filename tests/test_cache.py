"""dreamvid.cache: building, reusing and splitting the on-disk frame cache."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import dreamvid.cache as cache_module
from dreamvid.cache import FrameCache, Sequence, build_cache, held_out_length, minimum_frames
from dreamvid.errors import DreamvidError
from synthetic import make_video


@pytest.fixture
def clips(tmp_path):
    return [make_video(tmp_path / "a.mp4", n_frames=20, width=48, height=48, fps=24, seed=0),
            make_video(tmp_path / "b.mkv", n_frames=30, width=64, height=48, fps=24, seed=1)]


def _build(sources, root, **settings):
    return build_cache(sources, root, **{"size": 32, "fps": None, "crop": "center", "progress": False, **settings})


def test_two_sources_become_two_sequences(tmp_path, clips):
    cache = _build(clips, tmp_path / "cache")
    assert len(cache) == 50 and cache.frames.shape == (50, 32, 32, 3) and cache.frames.dtype == np.uint8
    assert isinstance(cache.frames, np.memmap) and not cache.frames.flags.writeable
    assert [(s.name, s.start, s.stop) for s in cache.sequences] == [("a", 0, 20), ("b", 20, 50)]
    assert (cache.fps, cache.size, cache.crop) == (24.0, 32, "center")
    assert cache.directory.parent == tmp_path / "cache"
    index = json.loads((cache.directory / "index.json").read_text())
    assert len(index["sources"]) == 2 and index["format_version"] == cache_module.FORMAT_VERSION
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.directory.name]  # no temp folders
    # the cached frames are the decoded frames, in order
    first_of_b = next(iter(cache_module.read_frames(clips[1], size=32, fps=24.0)))
    np.testing.assert_array_equal(cache.frames[20], first_of_b)


def test_second_build_reuses_without_decoding(tmp_path, clips, monkeypatch):
    first = _build(clips, tmp_path / "cache")
    mtime = (first.directory / "frames.u8").stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_module, "read_frames", no_decoding)
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(clips[0], renamed)  # the key follows content, not names
    second = _build([renamed, clips[1]], tmp_path / "cache", fps=24.0)
    assert second.directory == first.directory
    assert (second.directory / "frames.u8").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("change", [{"size": 48}, {"fps": 12.0}, {"crop": "full"}])
def test_changed_settings_get_a_new_key(tmp_path, clips, change):
    base = _build(clips[:1], tmp_path / "cache")
    other = _build(clips[:1], tmp_path / "cache", **change)
    assert other.directory != base.directory
    assert (other.size, other.fps, other.crop) != (base.size, base.fps, base.crop)


def test_default_fps_is_the_first_sources_capped_at_30(tmp_path):
    fast = make_video(tmp_path / "fast.mp4", n_frames=30, width=32, height=32, fps=60)
    slow = make_video(tmp_path / "slow.mp4", n_frames=12, width=32, height=32, fps=24)
    cache = _build([fast, slow], tmp_path / "cache")
    assert cache.fps == 30.0
    assert [s.stop - s.start for s in cache.sequences] == [15, 15]


def test_bad_source_fails_before_any_decoding(tmp_path, clips, monkeypatch):
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    decoded = []
    monkeypatch.setattr(cache_module, "read_frames", lambda *a, **k: decoded.append(a) or iter(()))
    with pytest.raises(DreamvidError, match="broken.mp4 is not a video"):
        _build([*clips, broken], tmp_path / "cache")
    assert decoded == []
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_failed_build_leaves_no_temp_folder(tmp_path, clips, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cache_module, "read_frames", fail)
    with pytest.raises(RuntimeError):
        _build(clips, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def _fake_cache(lengths: list[int]) -> FrameCache:
    sequences, start = [], 0
    for i, length in enumerate(lengths):
        sequences.append(Sequence(f"s{i}", f"s{i}.mp4", start, start + length))
        start += length
    return FrameCache(directory=Path("unused"), frames=np.zeros((start, 2, 2, 3), np.uint8), sequences=sequences,
                      fps=24.0, size=2, crop="center")


def test_validation_is_the_last_tenth_of_each_source_rounded_up():
    cache = _fake_cache([20, 25, 1, 30])
    assert cache.split_ranges("val") == [(18, 20), (42, 45), (45, 46), (73, 76)]
    assert cache.split_ranges("train") == [(0, 18), (20, 42), (45, 45), (46, 73)]
    assert [len(part) for part in cache.split("train")] == [18, 22, 0, 27]
    assert [len(part) for part in cache.split("val")] == [2, 3, 1, 3]
    with pytest.raises(ValueError):
        cache.split("test")


def test_damaged_cache_is_reported_with_a_fix(tmp_path, clips):
    cache = _build(clips[:1], tmp_path / "cache")
    index = cache.directory / "index.json"
    index.write_text("{not json")
    with pytest.raises(DreamvidError, match="damaged.*delete that folder"):
        FrameCache.open(cache.directory)
    rebuilt = _build(clips[:1], tmp_path / "cache")  # a damaged cache is rebuilt, not trusted
    assert len(rebuilt) == 20
    with open(rebuilt.directory / "frames.u8", "r+b") as frames:
        frames.truncate(100)
    with pytest.raises(DreamvidError, match="damaged"):
        FrameCache.open(rebuilt.directory)
    with pytest.raises(DreamvidError, match="not a frame cache"):
        FrameCache.open(tmp_path / "nowhere")


def test_minimum_frames_leaves_a_full_window_and_a_held_out_tail():
    for window in (8, 32, 50):
        n = minimum_frames(window)
        assert n - held_out_length(n) >= window + 1 and held_out_length(n) >= 2
        assert (n - 1) - held_out_length(n - 1) < window + 1 or held_out_length(n - 1) < 2
    assert [held_out_length(n) for n in (1, 9, 10, 11, 30, 31)] == [1, 1, 1, 2, 3, 4]
