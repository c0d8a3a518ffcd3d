"""Tiny synthetic videos for tests: moving shapes encoded with PyAV (a real codec, no mocks)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def moving_shapes(n_frames: int, width: int = 96, height: int = 96, seed: int = 0) -> np.ndarray:
    """Frames (N,H,W,3) uint8 of a bright square and a disc drifting over a gradient, deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                           np.full_like(xx, 60)], axis=-1).astype(np.uint8)
    side = max(4, min(width, height) // 5)
    radius = max(3, min(width, height) // 8)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for i in range(n_frames):
        frame = background.copy()
        t = 2 * np.pi * i / 40
        sx = int((width - side) * (0.5 + 0.45 * np.sin(t + phase[0])))
        sy = int((height - side) * (0.5 + 0.45 * np.cos(0.7 * t)))
        frame[sy:sy + side, sx:sx + side] = (250, 240, 30)
        cx = (width / 2) + 0.35 * width * np.cos(t * 1.3 + phase[1])
        cy = (height / 2) + 0.35 * height * np.sin(t * 0.9)
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2] = (30, 60, 240)
        frames[i] = frame
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float = 24, codec: str | None = None,
                pix_fmt: str = "yuv420p", container_options: dict[str, str] | None = None) -> Path:
    """Encode frames to `path` with PyAV; the codec follows the extension unless given.

    container_options: muxer options, e.g. {"movflags": "+faststart"} puts an mp4's index first.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    codec = codec or {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9",
                      ".avi": "mpeg4", ".gif": "gif"}[suffix]
    if codec == "gif":
        pix_fmt = "rgb8"
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_video(path: Path, n_frames: int = 48, width: int = 96, height: int = 96, fps: float = 24,
               seed: int = 0, **kwargs) -> Path:
    return write_video(path, moving_shapes(n_frames, width, height, seed), fps=fps, **kwargs)


def write_timed_video(path: Path, times: list[float], size: int = 32) -> Path:
    """Lossless H.264 whose frame i is solid grey level 6*i, shown at times[i] seconds (variable rate)."""
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"qp": "0"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        for i, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 6 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)


def _silence(stream: av.AudioStream, container: av.container.OutputContainer, seconds: float) -> None:
    for _ in range(int(seconds * 44100 / 1024)):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_audio(path: Path, seconds: float = 0.5) -> Path:
    """An audio-only file (AAC silence), e.g. .m4a."""
    with av.open(str(path), "w") as container:
        _silence(container.add_stream("aac", rate=44100), container, seconds)
    return Path(path)


def write_frameless_video(path: Path, size: int = 32) -> Path:
    """An .mkv with a video stream that holds no frames (audio keeps the file valid)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=24)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        _silence(container.add_stream("aac", rate=44100), container, 0.2)
    return Path(path)


def write_solid_video(path: Path, n_frames: int, width: int, height: int, fps: float = 24,
                      rotation: int = 0) -> Path:
    """Cheap H.264 of a frame whose left half is red, right half black; `rotation` sets the display matrix."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (220, 20, 20)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                      options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for _ in range(n_frames):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)
