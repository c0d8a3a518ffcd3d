"""dreamvid.video against real files encoded by PyAV (tests/synthetic.py)."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from dreamvid.errors import DreamvidError, UsageError
from dreamvid.video import VideoWriter, default_upscale, probe, read_frames
from synthetic import (make_video, moving_shapes, write_audio, write_frameless_video, write_solid_video,
                       write_timed_video)


def _read_back(path: Path) -> tuple[av.VideoStream, list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream, [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]


# ---------------------------------------------------------------------------------------------- reading


def test_probe_reports_the_stream(tmp_path):
    info = probe(make_video(tmp_path / "a.mp4", n_frames=12, width=64, height=48, fps=24))
    assert (info.width, info.height, info.fps, info.frames, info.codec) == (64, 48, 24.0, 12, "h264")
    assert info.duration == pytest.approx(0.5)


def test_requested_fps_resamples(tmp_path):
    path = make_video(tmp_path / "a.mp4", n_frames=48, width=48, height=48, fps=24)
    assert len(list(read_frames(path, size=32, fps=12))) == 24
    assert len(list(read_frames(path, size=32))) == 48  # the source rate when under the cap


def test_default_fps_is_capped_at_30(tmp_path):
    path = make_video(tmp_path / "a.mp4", n_frames=60, width=32, height=32, fps=60)
    assert len(list(read_frames(path, size=32))) == 30


@pytest.mark.parametrize("size", [64, 128])
def test_frames_are_square_rgb_uint8(tmp_path, size):
    frames = list(read_frames(make_video(tmp_path / "a.mp4", n_frames=4, width=96, height=64), size=size))
    assert len(frames) == 4
    for frame in frames:
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous


def test_center_crop_fills_and_full_letterboxes(tmp_path):
    path = make_video(tmp_path / "wide.mp4", n_frames=2, width=96, height=48)  # background never black
    center = next(read_frames(path, size=64, crop="center"))
    full = next(read_frames(path, size=64, crop="full"))
    assert center[:4].mean() > 30 and center[-4:].mean() > 30
    assert full[:16].max() == 0 and full[48:].max() == 0
    assert full[20:44].mean() > 30


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"])
def test_every_container_reads(tmp_path, suffix):
    path = make_video(tmp_path / f"a{suffix}", n_frames=12, width=48, height=48, fps=24)
    frames = list(read_frames(path, size=32))
    # gif stores delays in 1/100 s, so 24 fps comes back as about 25
    assert abs(len(frames) - 12) <= 1
    assert frames[0].shape == (32, 32, 3)


@pytest.mark.parametrize("crop", ["center", "full"])
def test_odd_portrait_source(tmp_path, crop):
    path = make_video(tmp_path / "odd.mp4", n_frames=3, width=333, height=777, codec="libx264", pix_fmt="yuv444p")
    frames = list(read_frames(path, size=64, crop=crop))
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)
    if crop == "full":  # 27x64 image in the middle, black left and right
        assert frames[0][:, :17].max() == 0 and frames[0][:, 47:].max() == 0 and frames[0][:, 20:44].mean() > 30


def test_variable_frame_rate_is_resampled_evenly(tmp_path):
    gaps = np.random.default_rng(0).integers(20, 90, size=39) / 1000
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    path = write_timed_video(tmp_path / "vfr.mp4", list(times))
    fps = 10.0
    frames = list(read_frames(path, size=32, fps=fps))
    assert abs(len(frames) - probe(path).duration * fps) <= 1
    shown = [round(frame.mean() / 6) for frame in frames]
    latest = [int(np.searchsorted(times, k / fps + 1e-9, side="right")) - 1 for k in range(len(frames))]
    assert shown == latest


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_file_yields_what_decodes_and_warns_once(tmp_path, suffix):
    path = make_video(tmp_path / f"full{suffix}", n_frames=48, width=48, height=48,
                      container_options={"movflags": "+faststart"} if suffix == ".mp4" else None)
    cut = tmp_path / f"cut{suffix}"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    warnings: list[str] = []
    frames = list(read_frames(cut, size=32, warn=warnings.append))
    assert 0 < len(frames) < 48
    assert len(warnings) == 1 and "truncated" in warnings[0] and str(cut) in warnings[0]
    assert list(read_frames(path, size=32, warn=warnings.append)) and len(warnings) == 1


def test_4k_input_never_becomes_a_full_size_rgb_array(tmp_path):
    path = write_solid_video(tmp_path / "big.mp4", n_frames=3, width=3840, height=2160)
    tracemalloc.start()
    try:
        frames = list(read_frames(path, size=64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frames) == 3
    assert peak < 2_000_000  # one 3840x2160 RGB array alone is 24.9 MB
    # centre crop of a left-red / right-black frame: the crop's left half is red
    assert frames[0][:, :28, 0].mean() > 150 and frames[0][:, 36:, 0].mean() < 40


def test_display_rotation_is_applied(tmp_path):
    path = write_solid_video(tmp_path / "rotated.mp4", n_frames=2, width=64, height=32, rotation=90)
    frame = next(read_frames(path, size=32, crop="full"))
    # coded 64x32 with red on the left, turned 90 degrees counter-clockwise: 32 wide x 64 tall, red at the bottom
    assert frame[:, :6].max() == 0 and frame[:, 26:].max() == 0
    assert frame[18:, 10:22, 0].mean() > 150 and frame[:14, 10:22, 0].mean() < 40


def test_one_frame_video(tmp_path):
    assert len(list(read_frames(make_video(tmp_path / "one.mp4", n_frames=1, width=32, height=32), size=32))) == 1


def test_missing_path_and_directory_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(UsageError, match="is a directory"):
        read_frames(tmp_path, size=32)


def test_text_file_is_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("hello, not a video\n")
    with pytest.raises(DreamvidError, match="is not a video FFmpeg can read") as caught:
        read_frames(path, size=32)
    assert not isinstance(caught.value, UsageError)


def test_audio_only_file_has_no_video_stream(tmp_path):
    with pytest.raises(DreamvidError, match="has no video stream"):
        probe(write_audio(tmp_path / "sound.m4a"))


def test_video_stream_without_frames(tmp_path):
    frames = read_frames(write_frameless_video(tmp_path / "empty.mkv"), size=32)
    with pytest.raises(DreamvidError, match="has no decodable video frames"):
        list(frames)


@pytest.mark.parametrize("settings", [{"crop": "zoom"}, {"size": 0}, {"fps": 0}, {"fps": -1.0}, {"max_fps": 0}])
def test_bad_settings_fail_at_call_time(tmp_path, settings):
    path = make_video(tmp_path / "a.mp4", n_frames=2, width=32, height=32)
    with pytest.raises(UsageError):
        read_frames(path, **{"size": 32, **settings})


def test_default_upscale():
    assert [default_upscale(s) for s in (64, 100, 256, 300)] == [4, 3, 1, 1]
    assert default_upscale(64, min_short_side=64) == 1


# ---------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix, codec", [(".mp4", "h264"), (".webm", "vp9"), (".gif", "gif")])
def test_video_round_trip(tmp_path, suffix, codec):
    frames = moving_shapes(10, 32, 32)
    path = tmp_path / f"out{suffix}"
    with VideoWriter(path, fps=12, upscale=2) as writer:
        writer.write(frames[0])
        writer.write_batch(frames[1:])
    assert writer.frames_written == 10
    stream, decoded = _read_back(path)
    assert stream.codec_context.name == codec
    assert len(decoded) == 10 and decoded[0].shape == (64, 64, 3)
    if suffix == ".mp4":
        assert stream.codec_context.pix_fmt == "yuv420p"
    assert np.abs(decoded[3].astype(int) - frames[3].repeat(2, 0).repeat(2, 1)).mean() < 12
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


def test_png_folder_round_trip(tmp_path):
    frames = moving_shapes(5, 32, 32)
    folder = tmp_path / "frames"
    with VideoWriter(folder, fps=12, upscale=3) as writer:
        writer.write_batch(frames)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:06d}.png" for i in range(5)]
    _, decoded = _read_back(folder / "frame_000004.png")
    np.testing.assert_array_equal(decoded[0], frames[4].repeat(3, 0).repeat(3, 1))
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_existing_folder_keeps_other_files(tmp_path):
    folder = tmp_path / "out.frames"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with VideoWriter(folder, fps=12) as writer:
        writer.write_batch(moving_shapes(3, 32, 32))
    with pytest.raises(UsageError, match="--force"):
        VideoWriter(folder, fps=12)
    with VideoWriter(folder, fps=12, force=True) as writer:
        writer.write(moving_shapes(1, 32, 32)[0])
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "notes.txt"]


def test_odd_size_is_padded_to_even_for_h264(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=12) as writer:
        writer.write_batch(moving_shapes(2, 33, 21))
    stream, decoded = _read_back(path)
    assert (stream.width, stream.height) == (34, 22) and len(decoded) == 2


def test_existing_output_needs_force(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(UsageError, match="exists; pass --force to overwrite"):
        VideoWriter(path, fps=12)
    assert path.read_bytes() == b"precious"
    with VideoWriter(path, fps=12, force=True) as writer:
        writer.write_batch(moving_shapes(3, 32, 32))
    assert len(_read_back(path)[1]) == 3


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(path, fps=12) as writer:
            writer.write_batch(moving_shapes(3, 32, 32))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"precious")
    with pytest.raises(RuntimeError):
        with VideoWriter(path, fps=12, force=True) as writer:
            writer.write_batch(moving_shapes(3, 32, 32))
            raise RuntimeError("stop")
    assert path.read_bytes() == b"precious" and list(tmp_path.iterdir()) == [path]


def test_unwritable_destination(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (blocker / "out.mp4", tmp_path / "missing" / "out.mp4"):
        with pytest.raises(DreamvidError, match="cannot write .*choose another -o") as caught:
            VideoWriter(path, fps=12)
        assert not isinstance(caught.value, UsageError)


def test_unknown_extension_lists_supported(tmp_path):
    with pytest.raises(UsageError, match=r"\.mp4.*\.webm.*\.gif"):
        VideoWriter(tmp_path / "out.avi", fps=12)


def test_memory_stays_flat_while_writing(tmp_path):
    frames = moving_shapes(50, 32, 32)
    process = psutil.Process()
    with VideoWriter(tmp_path / "long.mp4", fps=30) as writer:
        for i in range(3000):
            writer.write(frames[i % 50])
            if i == 500:
                settled = process.memory_info().rss
        grown = process.memory_info().rss - settled
    assert writer.frames_written == 3000
    assert grown < 10_000_000
