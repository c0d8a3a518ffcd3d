"""Decoding and encoding video with PyAV (FFmpeg's libraries; no ffmpeg binary needed)."""
from __future__ import annotations

import os
import queue
import secrets
import shutil
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from dreamvid.config import CROPS
from dreamvid.errors import DreamvidError, UsageError

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
READABLE = "mp4, mov, mkv, webm, avi or gif"
FIX_OUTPUT = "choose another -o"
# What the decoder may open: FFmpeg demuxers of video files and nothing else (a playlist or a concat list would
# make it read other files or URLs), through the file protocol only.
DEMUXERS = ("mov", "matroska", "webm", "avi", "gif", "mpegts", "mpeg", "flv", "ogg", "yuv4mpegpipe")
OPEN_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(DEMUXERS)}
READABLE_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".ts", ".mts", ".mpg", ".mpeg",
                     ".flv", ".ogv", ".y4m")
MAX_PIXELS = 8192 * 8192            # a frame larger than this is refused after probing, before any decoding
MAX_FRAMES = 1_000_000              # frames read from one file at most, whatever it declares (9 hours at 30 fps)
# Frames waiting for the encoder thread, at most this many bytes (and 32-1024 frames): a whole batch of dreamed
# frames fits, so the dream model steps on while the encoder works (docs/benchmarks.md: a queue of 32 frames,
# half a batch, stalled it: the demo run's dream to mp4 283 -> 309-323 frames/s with ONNX Runtime).
PENDING_BYTES = 16 << 20
MAX_GAP_S = 60.0                    # a jump between two frames' times longer than this is a damaged timestamp


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    frames: int | None
    duration: float | None
    codec: str


# ---------------------------------------------------------------------------------------------- reading


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, length and codec of the first video stream of `path`; a DreamvidError for a frame size
    no video has."""
    path = _input_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = _video_duration(container, stream) or (container.duration / av.time_base
                                                            if container.duration else None)
        info = VideoInfo(path=path, width=stream.width, height=stream.height,
                         fps=float(rate) if rate else 25.0,  # 25 is FFmpeg's own guess when nothing says
                         frames=stream.frames or None, duration=duration, codec=stream.codec_context.name)
    if not 0 < info.width * info.height <= MAX_PIXELS:
        raise DreamvidError(f"{path} declares {info.width}x{info.height} frames, outside what dreamvid reads "
                            f"(at most {MAX_PIXELS // 10 ** 6} megapixels)", "re-encode it at a smaller size")
    return info


def frame_limit(info: VideoInfo, fps: float) -> int:
    """The most frames reading `info` at `fps` may give: its declared length with a margin, and MAX_FRAMES."""
    if not info.duration:
        return MAX_FRAMES
    return min(MAX_FRAMES, int(info.duration * fps * 1.1) + round(2 * fps) + 2)


def check_read_settings(size: int, fps: float | None, crop: str) -> None:
    """UsageError unless the decoding settings make sense."""
    if crop not in CROPS:
        raise UsageError(f"unknown crop {crop!r}", f"use one of: {', '.join(CROPS)}")
    if not isinstance(size, int) or size <= 0:
        raise UsageError(f"frame size must be a positive whole number of pixels, got {size!r}")
    if fps is not None and not fps > 0:
        raise UsageError(f"fps must be greater than 0, got {fps!r}")


def read_frames(path: str | Path, *, size: int, fps: float | None = None, crop: str = "center",
                max_fps: float = 30.0, warn: Callable[[str], None] | None = None) -> Iterator[np.ndarray]:
    """Stream the video as uint8 RGB (size, size, 3) frames, evenly spaced at `fps`.

    `fps` defaults to the source rate capped at `max_fps`. Settings and the file are checked now;
    decoding happens while iterating. A truncated or damaged file yields what decodes and calls
    `warn` once.
    """
    check_read_settings(size, fps, crop)
    if not max_fps > 0:
        raise UsageError(f"max_fps must be greater than 0, got {max_fps!r}")
    info = probe(path)
    rate = fps if fps is not None else min(info.fps, max_fps)
    return _read(info, size, rate, crop, warn or _python_warning)


def _read(info: VideoInfo, size: int, fps: float, crop: str, warn: Callable[[str], None]) -> Iterator[np.ndarray]:
    limit = frame_limit(info, fps)
    with _open(info.path) as container:
        stream = _video_stream(container, info.path)
        stream.thread_type = "AUTO"
        previous, array = None, None
        frames = _resample(_decode(info.path, container, stream, warn), fps, info.fps, info.path)
        for count, frame in enumerate(frames):
            if count == limit:
                raise DreamvidError(f"{info.path} gives more frames than its declared length allows ({limit} at "
                                    f"{fps:g} fps)", "re-encode the file; its timestamps are damaged")
            if frame is previous:
                yield array.copy()
                continue
            previous, array = frame, _square(frame, size, crop)
            yield array


def _decode(path: Path, container: av.container.InputContainer, stream: av.VideoStream,
            warn: Callable[[str], None]) -> Iterator[av.VideoFrame]:
    """Decoded frames; damaged packets are skipped and a demuxing error ends the stream early."""
    decoded, damaged, first_time, last = 0, False, None, None
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets, None)
        except av.FFmpegError:
            damaged, packet = True, None  # None flushes the frames still inside the decoder
        # a truncated mp4 ends in a short, corrupt-flagged packet; a threaded decoder would drop more
        corrupt = packet is not None and packet.is_corrupt
        damaged |= corrupt
        try:
            frames = [] if corrupt else stream.decode(packet)
        except av.FFmpegError:
            damaged, frames = True, []
        for frame in frames:
            first_time = frame.time if decoded == 0 else first_time
            decoded, last = decoded + 1, frame
            yield frame
        if packet is None or packet.size == 0:  # PyAV ends demuxing with an empty flush packet
            break
    if last is None:
        raise DreamvidError(f"{path} has no decodable video frames",
                            "check that the file plays in a video player, or re-export it")
    if damaged or _cut_short(container, stream, first_time, last):
        warn(f"{path} is truncated or damaged: read the {decoded} frames that decode and skipped the rest")


def _cut_short(container: av.container.InputContainer, stream: av.VideoStream, first_time: float | None,
               last: av.VideoFrame) -> bool:
    """Whether the frames cover under 90% of the declared length: mkv and webm cut short end without an error."""
    declared = _video_duration(container, stream)
    if not declared or first_time is None or last.time is None:
        return False
    return last.time + float(last.duration * last.time_base) - first_time < 0.9 * declared


def _video_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """Seconds of video the file declares. The container's length counts only when it holds nothing
    but the video, because an audio track may run longer."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _resample(frames: Iterable[av.VideoFrame], fps: float, source_fps: float,
              path: Path | str = "the video") -> Iterator[av.VideoFrame]:
    """For each output tick (1/fps apart), the latest frame shown at or before it: frames repeat or drop.

    Works on presentation times, so variable-frame-rate input comes out evenly spaced. A jump of more than
    MAX_GAP_S between two frames is refused: repeating a frame over it would fill the disk.
    """
    step, eps = 1.0 / fps, 1e-6
    start = latest = time = None
    tick, end = 0, 0.0
    for frame in frames:
        previous, time = time, _shown_at(frame, time, source_fps)
        if previous is not None and time - previous > MAX_GAP_S:
            raise DreamvidError(f"{path} jumps from {previous:.3g} s to {time:.3g} s between two frames",
                                "re-encode the file; its timestamps are damaged")
        if start is None:
            start = time
        while latest is not None and start + tick * step < time - eps:
            yield latest
            tick += 1
        latest = frame
        end = time + (float(frame.duration * frame.time_base) if frame.duration else 1.0 / source_fps)
    while latest is not None and start + tick * step < end - eps:
        yield latest
        tick += 1


def _shown_at(frame: av.VideoFrame, previous: float | None, source_fps: float) -> float:
    """Presentation time in seconds; made up from the frame rate when missing, never going backwards."""
    if frame.time is None:
        return 0.0 if previous is None else previous + 1.0 / source_fps
    return frame.time if previous is None else max(frame.time, previous)


def _square(frame: av.VideoFrame, size: int, crop: str) -> np.ndarray:
    """Scale in swscale (never a full-size RGB array), then centre-crop or letterbox in numpy."""
    turns = round((frame.rotation or 0) / 90) % 4
    width, height = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    scaled_w, scaled_h = _scaled_size(width, height, size, crop)
    coded_w, coded_h = (scaled_h, scaled_w) if turns % 2 else (scaled_w, scaled_h)
    interpolation = "AREA" if coded_w * coded_h < frame.width * frame.height else "BICUBIC"
    rgb = frame.reformat(width=coded_w, height=coded_h, format="rgb24", interpolation=interpolation)
    image = np.rot90(rgb.to_ndarray(), turns)  # the display matrix turns counter-clockwise, as rot90 does
    if crop == "center":
        top, left = (scaled_h - size) // 2, (scaled_w - size) // 2
        return np.ascontiguousarray(image[top:top + size, left:left + size])
    top, left = (size - scaled_h) // 2, (size - scaled_w) // 2
    square = np.zeros((size, size, 3), np.uint8)
    square[top:top + scaled_h, left:left + scaled_w] = image
    return square


def square_frame(frame: np.ndarray, size: int, crop: str = "center") -> np.ndarray:
    """One uint8 RGB array resized exactly as read_frames resizes decoded frames."""
    return _square(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"), size, crop)


def _scaled_size(width: int, height: int, size: int, crop: str) -> tuple[int, int]:
    """Short side = size for "center" (to crop), long side = size for "full" (to letterbox)."""
    if crop == "center":
        scale = size / min(width, height)
        return max(size, round(width * scale)), max(size, round(height * scale))
    scale = size / max(width, height)
    return min(size, max(1, round(width * scale))), min(size, max(1, round(height * scale)))


def _input_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist", "check the path")
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a video file", "pass a video file inside it")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), container_options=OPEN_OPTIONS)
    except PermissionError:
        raise DreamvidError(f"cannot read {path}: permission denied", "fix its permissions") from None
    except av.FFmpegError as error:
        raise DreamvidError(f"{path} is not a video FFmpeg can read ({error.strerror})",
                            f"check that the file is complete and is a video ({READABLE})") from None
    except UnicodeDecodeError:   # PyAV decodes the container's metadata as UTF-8 while opening
        raise DreamvidError(f"{path} holds metadata that is not text; the file is damaged",
                            f"check that the file is complete and is a video ({READABLE})") from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise DreamvidError(f"{path} has no video stream", "pass a file with video, not only audio")
    stream = container.streams.video[0]
    if stream.codec_context is None:   # a damaged header can name a codec FFmpeg has no decoder for
        raise DreamvidError(f"{path} has a video stream FFmpeg cannot decode; the file is damaged or its codec "
                            f"unknown", f"re-encode it as H.264 in an mp4 ({READABLE})")
    return stream


def _python_warning(message: str) -> None:
    warnings.warn(message, stacklevel=4)


# ---------------------------------------------------------------------------------------------- writing


def default_upscale(size: int, min_short_side: int = 256) -> int:
    """Smallest whole factor k >= 1 with size * k >= min_short_side."""
    return max(1, -(-min_short_side // size))


class VideoWriter:
    """Encode RGB frames to .mp4 (H.264), .webm (VP9), .gif, or a folder of PNGs (no suffix / a folder).

    Writes to a temporary file next to the output and renames it on a successful close, so an
    interrupted write never leaves half a file or clobbers an existing one.
    """

    def __init__(self, path: str | Path, fps: float, *, upscale: int = 1, force: bool = False):
        if not fps > 0:
            raise UsageError(f"fps must be greater than 0, got {fps!r}")
        if not isinstance(upscale, int) or upscale < 1:
            raise UsageError(f"upscale must be a whole number >= 1, got {upscale!r}")
        self.path = Path(path)
        self.fps = fps
        self.upscale = upscale
        self.frames_written = 0
        self._pending: queue.Queue | None = None   # made at the first frame, sized by PENDING_BYTES
        self._worker: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._folder = _is_folder_output(self.path)
        _check_target(self.path, self._folder, force)
        self._temp = _make_temp(self.path, self._folder)
        self._encoder: _ContainerEncoder | _PngEncoder | None = None
        self._shape: tuple[int, ...] = ()
        self._closed = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Queue a frame; a worker thread encodes it, so generating the next frames overlaps encoding."""
        if self._closed:
            raise ValueError(f"{self.path}: write after close")
        frame = _check_frame(frame)
        if self._encoder is None:
            self._encoder = self._start(frame.shape[1] * self.upscale, frame.shape[0] * self.upscale)
            self._shape = frame.shape
            self._pending = queue.Queue(maxsize=min(max(PENDING_BYTES // frame.nbytes, 32), 1024))
            self._worker = threading.Thread(target=self._encode_pending, name="dreamvid-encoder", daemon=True)
            self._worker.start()
        elif frame.shape != self._shape:
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, earlier frames were "
                             f"{self._shape[1]}x{self._shape[0]}")
        self._raise_failure()
        self._pending.put(frame)
        self.frames_written += 1

    def _encode_pending(self) -> None:
        while (frame := self._pending.get()) is not None:
            if self._failure is None:
                try:
                    self._encoder.write(frame, self.upscale)
                except BaseException as failure:  # handed to the writing thread at its next call
                    self._failure = failure

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._pending.put(None)
            self._worker.join()
            self._worker = None

    def write_batch(self, frames: Iterable[np.ndarray]) -> None:
        for frame in frames:
            self.write(frame)

    def close(self) -> None:
        """Finish encoding and move the output into place."""
        if self._closed:
            return
        if self._encoder is None:
            self.abort()
            raise DreamvidError(f"no frames were written to {self.path}", "write at least one frame")
        try:
            self._stop_worker()
            self._raise_failure()
            self._encoder.finish()
            _commit(self._temp, self.path, self._folder)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Stop without producing output; removes the temporary file."""
        self._stop_worker()
        if self._encoder is not None:
            self._encoder.abort()
        self._closed = True
        _remove(self._temp)

    def _start(self, width: int, height: int) -> _ContainerEncoder | _PngEncoder:
        if self._folder:
            return _PngEncoder(self._temp, width, height)
        return _ContainerEncoder(self._temp, self.path.suffix.lower()[1:], self.fps, width, height)


class _ContainerEncoder:
    SETTINGS = {
        # One x264 thread: dreaming runs beside the encoder, and x264's own threads took its cores (docs/benchmarks.md:
        # the demo run's dream to mp4, 163 -> 221 frames/s with torch, 237 -> 283 with ONNX Runtime)
        "mp4": ("libx264", "yuv420p", {"crf": "18", "preset": "ultrafast", "threads": "1"}),
        "webm": ("libvpx-vp9", "yuv420p", {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "4",
                                           "row-mt": "1"}),
        "gif": ("gif", "pal8", {}),
    }

    def __init__(self, path: Path, kind: str, fps: float, width: int, height: int):
        codec, self.pix_fmt, options = self.SETTINGS[kind]
        self.rate = Fraction(fps).limit_denominator(1001)
        self.width, self.height = (width + width % 2, height + height % 2) if self.pix_fmt == "yuv420p" \
            else (width, height)
        container_options = {"movflags": "+faststart"} if kind == "mp4" else {}
        self.container = av.open(str(path), "w", format=kind, options=container_options)
        self.stream = self.container.add_stream(codec, rate=self.rate, options=options)
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, self.pix_fmt
        self.palette = _palette_graph(width, height, self.rate) if kind == "gif" else None
        self.index = 0

    def write(self, frame: np.ndarray, upscale: int = 1) -> None:
        height, width = frame.shape[0] * upscale, frame.shape[1] * upscale
        if (height, width) != (self.height, self.width):
            # yuv420p needs even sides: repeat the last row/column rather than add a black line
            frame = _nearest_upscale(frame, upscale)
            frame = np.pad(frame, ((0, self.height - height), (0, self.width - width), (0, 0)), mode="edge")
            upscale = 1
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        if upscale > 1:
            # Nearest-neighbour upscale and colour conversion in one swscale pass: faster than numpy's repeat.
            video_frame = video_frame.reformat(width=self.width, height=self.height, interpolation="POINT",
                                               format="rgb24" if self.palette is not None else self.pix_fmt)
        video_frame.pts, video_frame.time_base = self.index, 1 / self.rate
        self.index += 1
        self._encode(video_frame)

    def finish(self) -> None:
        self._encode(None)
        self.container.mux(self.stream.encode(None))
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except av.FFmpegError:
            pass  # the output is being thrown away

    def _encode(self, frame: av.VideoFrame | None) -> None:
        if self.palette is None:
            if frame is not None:
                self.container.mux(self.stream.encode(frame))
            return
        self.palette.push(frame)
        while True:
            try:
                paletted = self.palette.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            self.container.mux(self.stream.encode(paletted))


def _palette_graph(width: int, height: int, rate: Fraction) -> av.filter.Graph:
    """A per-frame optimal 256-colour palette (palettegen + paletteuse), streamed frame by frame."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=1 / rate)
    split = graph.add("split")
    palettegen = graph.add("palettegen", "stats_mode=single")
    paletteuse = graph.add("paletteuse", "new=1:dither=sierra2_4a")
    sink = graph.add("buffersink")
    source.link_to(split)
    split.link_to(paletteuse, 0, 0)
    split.link_to(palettegen, 1, 0)
    palettegen.link_to(paletteuse, 0, 1)
    paletteuse.link_to(sink)
    graph.configure()
    return graph


class _PngEncoder:
    def __init__(self, folder: Path, width: int, height: int):
        self.folder = folder
        self.codec = av.CodecContext.create("png", "w")
        self.codec.width, self.codec.height, self.codec.pix_fmt = width, height, "rgb24"
        self.index = 0

    def write(self, frame: np.ndarray, upscale: int = 1) -> None:
        frame = _nearest_upscale(frame, upscale)
        packets = self.codec.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))  # PNG: one packet, no delay
        (self.folder / f"frame_{self.index:06d}.png").write_bytes(b"".join(bytes(p) for p in packets))
        self.index += 1

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _nearest_upscale(frame: np.ndarray, upscale: int) -> np.ndarray:
    return frame if upscale == 1 else frame.repeat(upscale, axis=0).repeat(upscale, axis=1)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


def _is_folder_output(path: Path) -> bool:
    if path.is_dir() or not path.suffix:
        return True
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"cannot write {path.suffix} files",
                         f"end the output with {', '.join(VIDEO_SUFFIXES)}, or give a folder for PNG frames")
    return False


def _check_target(path: Path, folder: bool, force: bool) -> None:
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder for PNG frames",
                         f"choose a folder or a name ending {', '.join(VIDEO_SUFFIXES)}")
    if folder and path.is_dir():
        if any(path.glob("frame_*.png")) and not force:
            raise UsageError(f"{path} already holds frame_*.png files", "pass --force to overwrite them")
        parent = path
    else:
        if path.exists() and not force:
            raise UsageError(f"{path} exists", "pass --force to overwrite")
        parent = path.parent
    if not parent.is_dir():
        raise DreamvidError(f"cannot write {path}: {parent} is not an existing directory",
                            f"create it or {FIX_OUTPUT}")
    if not os.access(parent, os.W_OK):
        raise DreamvidError(f"cannot write {path}: permission denied", FIX_OUTPUT)


def _make_temp(path: Path, folder: bool) -> Path:
    """An empty temporary file or folder on the output's file system, so the final rename is atomic.

    Not made with tempfile: its 0600/0700 modes would stick to the output after the rename.
    """
    temp = (path if folder and path.is_dir() else path.parent) / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        if folder:
            temp.mkdir()
        else:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise DreamvidError(f"cannot write {path}: {error.strerror.lower()}", FIX_OUTPUT) from None
    return temp


def _commit(temp: Path, path: Path, folder: bool) -> None:
    if not (folder and path.is_dir()):
        os.replace(temp, path)
        return
    # an existing folder may hold the user's other files: replace only our frames, never the folder
    for old in path.glob("frame_*.png"):
        old.unlink()
    for new in sorted(temp.iterdir()):
        os.replace(new, path / new.name)
    temp.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
