"""Live dreams for the studio: one generator thread per client, the latest frame only, never a backlog.

Each WebSocket client owns a `DreamStream`. Its thread asks the run's `DreamSession` for a few frames at a
time, encodes each one to JPEG and publishes it, paced to the client's frame rate, into a one-frame mailbox.
The connection's sender takes whatever frame is newest when the socket is ready for it: a slow client gets
fewer frames (the rest are dropped and counted), never a growing queue, so memory stays flat and one client
never holds up another. Controls (temperature, speed, re-projection, reseed, pause, run) land in the thread
between frames; a control that changes the picture bumps the stream's version, which every frame carries in
its header, so the page can tell when a change became visible.
"""
from __future__ import annotations

import collections
import contextlib
import math
import queue
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DreamvidError, UsageError

# Binary frame message, little-endian: uint32 frame number on this connection, uint32 control version (the
# newest control the frame reflects), uint32 frame number within the current dream (reset by a reseed or a run
# switch, counting every frame generated, shown or not), then the JPEG bytes. With a fixed seed the frame with a
# given dream number is the same picture every time, which is how tests compare temperatures exactly.
FRAME_HEADER = struct.Struct("<III")
MAX_RECORD_SECONDS = 120.0
MIN_FPS, MAX_FPS = 0.5, 120.0
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 5.0


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 (H,W,3) -> JPEG bytes (OpenCV, which the package already depends on)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV only fails on malformed arrays
        raise DreamvidError("could not encode a frame as JPEG")
    return buf.tobytes()


def default_loader(run_dir: Path) -> Any:
    from ..dreaming import load

    return load(run_dir, device="auto")


def source_count(dreamer: Any) -> int:
    """How many source frames a dream can restart from."""
    latents = getattr(dreamer, "latents", None)
    if isinstance(latents, dict) and "mu" in latents:
        return int(len(latents["mu"]))
    cache = dreamer.cache
    return len(cache) if cache is not None else 0


def source_frame(dreamer: Any, index: int) -> np.ndarray:
    """Source frame `index` from the run's frame cache, or its VAE reconstruction when the cache is gone."""
    cache = dreamer.cache
    if cache is not None and 0 <= index < len(cache):
        return np.asarray(cache.frames[index])
    return dreamer.decode(dreamer.latents["mu"][index:index + 1])[0]


class DreamerPool:
    """Loaded runs, shared by every client that dreams them (weights once in memory, not once per tab).

    A run retrained in place (its rnn weights newer than the loaded copy) is loaded again.
    """

    def __init__(self, loader: Callable[[Path], Any] | None = None, max_loaded: int = 4):
        self._loader = loader or default_loader
        self._max = max_loaded
        self._lock = threading.Lock()
        self._loaded: collections.OrderedDict[Path, tuple[float, Any]] = collections.OrderedDict()
        self._loading: dict[Path, threading.Lock] = {}

    @staticmethod
    def _stamp(run_dir: Path) -> float:
        try:
            return max((run_dir / name).stat().st_mtime for name in ("rnn.safetensors", "vae.safetensors"))
        except OSError:
            return 0.0

    def get(self, run_dir: Path) -> Any:
        run_dir = Path(run_dir).resolve()
        stamp = self._stamp(run_dir)
        with self._lock:
            hit = self._loaded.get(run_dir)
            if hit is not None and hit[0] == stamp:
                self._loaded.move_to_end(run_dir)
                return hit[1]
            lock = self._loading.setdefault(run_dir, threading.Lock())
        with lock:  # one load per run at a time; other runs load in parallel
            with self._lock:
                hit = self._loaded.get(run_dir)
                if hit is not None and hit[0] == stamp:
                    return hit[1]
            dreamer = self._loader(run_dir)
            with self._lock:
                self._loaded[run_dir] = (stamp, dreamer)
                self._loaded.move_to_end(run_dir)
                while len(self._loaded) > self._max:
                    self._loaded.popitem(last=False)
            return dreamer


def _video_writer(path: Path, fps: float, size: int):
    from ..video import VideoWriter, default_upscale

    return VideoWriter(path, fps, upscale=default_upscale(size))


class Recorder:
    """Writes the next `n_frames` frames of a stream to an mp4 in RUN_DIR/dreams/, off the stream's thread.

    Frames go through a queue bounded by the recording's length; the file appears under its final name only
    when complete (a partial one, from a stream that ended early, is finished with what it got).
    """

    def __init__(self, dreams_dir: Path, fps: float, size: int, n_frames: int,
                 on_done: Callable[[Path | None, str | None], None], writer_factory=None):
        self.n_frames = n_frames
        self.pushed = 0
        dreams_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        final = dreams_dir / f"dream-{stamp}.mp4"
        i = 2
        while final.exists():
            final = dreams_dir / f"dream-{stamp}-{i}.mp4"
            i += 1
        self.path = final
        self._queue: queue.Queue = queue.Queue(maxsize=n_frames + 1)
        self._fps, self._size = fps, size
        self._on_done = on_done
        self._writer_factory = writer_factory or _video_writer
        self._thread = threading.Thread(target=self._write, name="dreamvid-recorder", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return self.pushed >= self.n_frames

    def push(self, frame: np.ndarray) -> None:
        if self.pushed < self.n_frames:
            self._queue.put(frame)
            self.pushed += 1
            if self.pushed == self.n_frames:
                self._queue.put(None)

    def close(self) -> None:
        """End the recording early (stream stopped, run switched): the file keeps what it got."""
        if self.pushed < self.n_frames:
            self.pushed = self.n_frames
            self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _write(self) -> None:
        writer = None
        try:
            # The writer encodes to a hidden temporary file and renames it when closed: the gallery never
            # lists half a recording.
            writer = self._writer_factory(self.path, self._fps, self._size)
            written = 0
            while True:
                frame = self._queue.get()
                if frame is None:
                    break
                writer.write(frame)
                written += 1
            if written == 0:
                writer.abort()
                self._on_done(None, "the recording ended before any frame was dreamed")
                return
            writer.close()
            self._on_done(self.path, None)
        except Exception as exc:  # a failed recording must not take the stream down
            traceback.print_exc(file=sys.stderr)
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.abort()
            message = str(exc) if isinstance(exc, DreamvidError) else f"{type(exc).__name__}: {exc}"
            self._on_done(None, f"recording failed: {message}")


@dataclass
class _Controls:
    run: str | None = None
    temperature: float | None = None
    speed: float = 1.0
    fps: float | None = None          # explicit frame rate; overrides speed when set
    paused: bool = False
    reproject: bool = False           # each latent back through the VAE (Dreamer.session)
    reseed: dict | None = None
    record: float | None = None
    version: int = 0


class DreamStream:
    """One client's endless dream. Thread-safe `apply(message)`; `take_frame()` / `take_events()` for the sender.

    `resolve_run(run_id) -> Path` maps the page's run ids to run folders (raising `UsageError` for unknown
    ones); `wake()` is called (from the generator thread) whenever something new is ready to send.
    """

    def __init__(self, pool: DreamerPool, resolve_run: Callable[[str], Path], wake: Callable[[], None],
                 describe_run: Callable[[str], dict] | None = None, quality: int = 90,
                 writer_factory=None):
        self._pool = pool
        self._resolve_run = resolve_run
        self._describe_run = describe_run or (lambda run_id: {"id": run_id})
        self._wake = wake
        self._quality = quality
        self._writer_factory = writer_factory
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._controls = _Controls()
        self._frame: bytes | None = None
        self._events: collections.deque = collections.deque(maxlen=32)
        self._stats: dict | None = None
        self.produced = 0
        self.dropped = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._loop, name="dreamvid-stream", daemon=True)

    # ---- control side (any thread) ----

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the thread to end (immediately, without blocking) and, unless timeout is 0, wait for it."""
        self._stopped.set()
        self._changed.set()
        if timeout != 0 and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def apply(self, message: dict) -> None:
        """Apply a control message from the page. Raises UsageError for one that makes no sense."""
        if not isinstance(message, dict):
            raise UsageError("a control message must be a JSON object")
        kind = message.get("type")
        with self._lock:
            c = self._controls
            version = _as_int(message.get("v"), "v", minimum=0) if message.get("v") is not None else None
            if kind in ("start", "run"):
                run = message.get("run")
                if run is not None:
                    self._resolve_run(str(run))  # unknown ids fail here, in the page's terms
                    c.run = str(run)
                if kind == "start":
                    c.temperature = _temperature(message.get("temperature"), c.temperature)
                    c.speed = _speed(message.get("speed"), c.speed)
                    c.fps = _fps(message.get("fps"), c.fps)
                    c.paused = bool(message.get("paused", False))
                    c.reproject = _as_bool(message.get("reproject", False), "reproject")
                    if message.get("seed") is not None or message.get("frame_index") is not None:
                        c.reseed = {"seed": _opt_int(message.get("seed"), "seed"),
                                    "frame_index": _opt_int(message.get("frame_index"), "frame_index")}
            elif kind == "set":
                if "temperature" in message:
                    c.temperature = _temperature(message["temperature"], c.temperature)
                if "speed" in message:
                    c.speed = _speed(message["speed"], c.speed)
                    c.fps = None
                if "fps" in message:
                    c.fps = _fps(message["fps"], c.fps)
                if "reproject" in message:
                    c.reproject = _as_bool(message["reproject"], "reproject")
            elif kind == "pause":
                c.paused = bool(message.get("paused", not c.paused))
            elif kind == "reseed":
                c.reseed = {"seed": _opt_int(message.get("seed"), "seed"),
                            "frame_index": _opt_int(message.get("frame_index"), "frame_index")}
            elif kind == "record":
                seconds = _as_float(message.get("seconds", 10), "seconds")
                if not 0 < seconds <= MAX_RECORD_SECONDS:
                    raise UsageError(f"record between 1 and {MAX_RECORD_SECONDS:g} seconds")
                c.record = seconds
            else:
                raise UsageError(f"unknown control {kind!r}")
            if version is not None:
                c.version = max(c.version, version)
        self._changed.set()

    # ---- sender side (event loop) ----

    def take_frame(self) -> bytes | None:
        with self._lock:
            frame, self._frame = self._frame, None
        if frame is not None:
            self.sent += 1
        return frame

    def take_events(self) -> list[dict]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
            if self._stats is not None:
                events.append(self._stats)
                self._stats = None
        return events

    # ---- generator thread ----

    def _event(self, event: dict) -> None:
        with self._lock:
            self._events.append(event)
        self._wake()

    def _publish(self, seq: int, version: int, index: int, jpeg: bytes) -> None:
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = FRAME_HEADER.pack(seq & 0xFFFFFFFF, version & 0xFFFFFFFF, index & 0xFFFFFFFF) + jpeg
            self.produced += 1
        self._wake()

    def _loop(self) -> None:
        try:
            self._dream()
        except Exception as exc:  # never let a thread die silently; the page gets one line, the terminal the trace
            traceback.print_exc(file=sys.stderr)
            self._event({"type": "error", "message": f"the dream stopped: {type(exc).__name__}: {exc}"})

    def _dream(self) -> None:
        session = dreamer = None
        run_id: str | None = None
        recorder: Recorder | None = None
        seq = 0
        dream_index = 0
        next_due: float | None = None
        gen_fps = 0.0
        stats_at = time.monotonic()
        produced_at_stats = 0
        while not self._stopped.is_set():
            self._changed.clear()
            with self._lock:
                c = self._controls
                want_run, temperature, paused, version = c.run, c.temperature, c.paused, c.version
                reproject = c.reproject
                reseed, c.reseed = c.reseed, None
                record, c.record = c.record, None
                speed, fixed_fps = c.speed, c.fps
            if want_run != run_id:
                if recorder is not None:
                    recorder.close()
                    recorder = None
                run_id, session, dreamer = want_run, None, None
                if run_id is None:
                    self._changed.wait(1.0)
                    continue
                try:
                    dreamer = self._pool.get(self._resolve_run(run_id))
                    session = dreamer.session(temperature=temperature)
                except DreamvidError as exc:
                    self._event({"type": "error", "message": str(exc), "run": run_id})
                    continue
                except Exception as exc:  # a damaged run: one line for the page, the trace for the terminal
                    traceback.print_exc(file=sys.stderr)
                    self._event({"type": "error", "run": run_id,
                                 "message": f"cannot dream this run: {type(exc).__name__}: {exc}"})
                    session = None
                    continue
                if temperature is None:
                    temperature = float(getattr(session, "temperature", 1.0))
                    with self._lock:
                        if self._controls.temperature is None:
                            self._controls.temperature = temperature
                info = dict(self._describe_run(run_id))
                info.update(type="ready", run=run_id, fps=float(dreamer.fps), size=int(dreamer.size),
                            frames=source_count(dreamer), temperature=temperature)
                self._event(info)
                next_due = None
                dream_index = 0
            if session is None:
                self._changed.wait(1.0)
                continue
            if temperature is not None and getattr(session, "temperature", None) != temperature:
                session.temperature = temperature
            session.reproject = reproject
            if reseed is not None:
                try:
                    session.reseed(**reseed)
                    dream_index = 0
                except DreamvidError as exc:
                    self._event({"type": "error", "message": str(exc)})
            fps = fixed_fps if fixed_fps is not None else float(dreamer.fps) * speed
            fps = min(max(fps, MIN_FPS), MAX_FPS)
            if record is not None:
                if recorder is not None:
                    recorder.close()
                n = max(1, round(record * fps))
                recorder = Recorder(Path(dreamer.run_dir) / "dreams", fps, int(dreamer.size), n,
                                    self._recorded_callback(run_id), self._writer_factory)
                self._event({"type": "recording", "seconds": record, "frames": n, "fps": fps})
            if paused:
                next_due = None
                self._changed.wait(1.0)
                continue
            # A batch covers about 70 ms of stream: small enough that a control lands fast, large enough that
            # the model runs batched.
            k = int(min(4, max(1, round(fps * 0.07))))
            t0 = time.perf_counter()
            try:
                frames = session.next_frames(k)
            except Exception as exc:  # stop this dream, keep the connection: another run can still be picked
                traceback.print_exc(file=sys.stderr)
                self._event({"type": "error", "run": run_id,
                             "message": f"the dream stopped: {type(exc).__name__}: {exc}"})
                session = None
                continue
            elapsed = time.perf_counter() - t0
            if elapsed > 0:
                rate = len(frames) / elapsed
                gen_fps = rate if gen_fps == 0 else 0.8 * gen_fps + 0.2 * rate
            first_index, dream_index = dream_index, dream_index + len(frames)
            for offset, frame in enumerate(frames):
                if self._stopped.is_set():
                    break
                jpeg = encode_jpeg(frame, self._quality)
                now = time.monotonic()
                if next_due is None or next_due < now - max(2.0 / fps, 0.1):
                    next_due = now  # fell behind (the model's limit): restart the clock rather than burst
                delay = next_due - now
                interrupted = delay > 0 and self._changed.wait(delay)
                if interrupted:
                    with self._lock:
                        stale = (self._controls.version != version or self._controls.run != run_id
                                 or self._controls.paused or self._controls.reseed is not None)
                    if stale:
                        next_due = None  # show the first frame with the new settings as soon as it exists
                        break  # the rest of this batch shows the old settings: drop it
                self._publish(seq, version, first_index + offset, jpeg)
                seq += 1
                next_due += 1.0 / fps
                if recorder is not None:
                    recorder.push(frame)
                    if recorder.done:
                        recorder = None
                if interrupted:
                    break
            now = time.monotonic()
            if now - stats_at >= 1.0:
                with self._lock:
                    produced, dropped = self.produced, self.dropped
                    self._stats = {"type": "stats", "fps": round((produced - produced_at_stats) / (now - stats_at), 1),
                                   "target_fps": round(fps, 2), "model_fps": round(gen_fps, 1),
                                   "dropped": dropped, "frames": produced}
                stats_at, produced_at_stats = now, produced
        if recorder is not None:
            recorder.close()

    def _recorded_callback(self, run_id: str | None):
        def done(path: Path | None, error: str | None) -> None:
            if self._stopped.is_set():
                return
            if path is None:
                self._event({"type": "error", "message": error or "recording failed"})
            else:
                self._event({"type": "recorded", "run": run_id, "name": path.name,
                             "url": f"/api/runs/{run_id}/dreams/{path.name}"})
        return done


def _as_float(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise UsageError(f"{name} must be a finite number")
    return out


def _as_int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{name} must be an integer")
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, float) and out != value:
        raise UsageError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and out < minimum:
        raise UsageError(f"{name} must be at least {minimum}")
    return out


def _as_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, got {value!r}")
    return value


def _opt_int(value: Any, name: str) -> int | None:
    return None if value is None or value == "" else _as_int(value, name, minimum=0)


def _in_range(value: Any, current: float | None, name: str, low: float, high: float) -> float | None:
    """A control's new value, checked against its range; None keeps the current one."""
    if value is None:
        return current
    number = _as_float(value, name)
    if not low <= number <= high:
        raise UsageError(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return number


def _temperature(value: Any, current: float | None) -> float | None:
    return _in_range(value, current, "temperature", MIN_TEMPERATURE, MAX_TEMPERATURE)


def _speed(value: Any, current: float) -> float:
    return _in_range(value, current, "speed", 0.05, 16)


def _fps(value: Any, current: float | None) -> float | None:
    return _in_range(value, current, "fps", MIN_FPS, MAX_FPS)
