"""Live dreams for the studio: one generator thread per client, the latest frame only, never a backlog.

Each WebSocket client owns a `DreamStream`. Its thread asks the run's `DreamSession` for a few frames at a
time, encodes each one to JPEG and publishes it, paced to the client's frame rate, into a one-frame `Mailbox`.
The connection's sender takes whatever frame is newest when the socket is ready for it: a slow client gets
fewer frames (the rest are dropped and counted), never a growing queue, so memory stays flat and one client
never holds up another. Controls (controls.py: temperature, speed, re-projection, reseed, pause, run, record)
land in the thread between frames; a control that changes the picture bumps the stream's version, which every
frame carries in its header, so the page can tell when a change became visible.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import queue
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DreamvidError
from ..rundir import RunDir
from .controls import MAX_FPS, MIN_FPS, Controls, read_control

# Binary frame message, little-endian: uint32 frame number on this connection, uint32 control version (the
# newest control the frame reflects), uint32 frame number within the current dream (reset by a reseed or a run
# switch, counting every frame generated, shown or not), then the JPEG bytes. With a fixed seed the frame with a
# given dream number is the same picture every time, which is how tests compare temperatures exactly.
FRAME_HEADER = struct.Struct("<III")
# A batch covers about 70 ms of stream: small enough that a control lands fast, large enough that the model runs
# batched.
BATCH_SECONDS, MAX_BATCH = 0.07, 4


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
        run = RunDir(run_dir)
        try:
            return max(run.weights_path(model).stat().st_mtime for model in ("rnn", "vae"))
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


def reserve_name(folder: Path, stem: str) -> tuple[Path, Path]:
    """`folder/stem.mp4` (or stem-2.mp4, ...) that no file and no other recording has, and the hidden marker
    that reserves it, made with O_EXCL: two recordings started in one second never pick the same name."""
    for number in itertools.count(1):
        path = folder / (f"{stem}.mp4" if number == 1 else f"{stem}-{number}.mp4")
        marker = folder / f".{path.name}.reserved"
        if path.exists():
            continue
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        return path, marker
    raise AssertionError("unreachable")


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
        self.path, self._reservation = reserve_name(dreams_dir, f"dream-{datetime.now():%Y%m%d-%H%M%S}")
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

    def _write(self) -> None:
        try:
            self._write_frames()
        finally:
            self._reservation.unlink(missing_ok=True)

    def _write_frames(self) -> None:
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


class Mailbox:
    """What the generator thread has for the sender: the newest frame only (an older unsent one is dropped and
    counted), a short queue of events, and the latest stats. `wake()` tells the sender something is there."""

    def __init__(self, wake: Callable[[], None], max_events: int = 32):
        self._wake = wake
        self._lock = threading.Lock()
        self._frame: bytes | None = None
        self._events: collections.deque = collections.deque(maxlen=max_events)
        self._stats: dict | None = None
        self.produced = self.dropped = 0

    def publish(self, seq: int, version: int, index: int, jpeg: bytes) -> None:
        header = FRAME_HEADER.pack(seq & 0xFFFFFFFF, version & 0xFFFFFFFF, index & 0xFFFFFFFF)
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = header + jpeg
            self.produced += 1
        self._wake()

    def event(self, event: dict) -> None:
        with self._lock:
            self._events.append(event)
        self._wake()

    def stats(self, stats: dict) -> None:
        with self._lock:
            self._stats = stats

    def take_frame(self) -> bytes | None:
        with self._lock:
            frame, self._frame = self._frame, None
        return frame

    def take_events(self) -> list[dict]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
            if self._stats is not None:
                events.append(self._stats)
                self._stats = None
        return events


@dataclass
class _Playback:
    """The generator thread's own state (only that thread touches it)."""

    run_id: str | None = None
    dreamer: Any = None
    session: Any = None
    recorder: Recorder | None = None
    seq: int = 0                    # frames published on this connection
    dream_index: int = 0            # frames generated in the current dream (reset by a reseed or a run switch)
    next_due: float | None = None   # when the next frame should be shown; None: as soon as it exists
    model_fps: float = 0.0          # how fast the model generates, smoothed
    stats_at: float = field(default_factory=time.monotonic)
    produced_at_stats: int = 0


class DreamStream:
    """One client's endless dream. Thread-safe `apply(message)`; `take_frame()` / `take_events()` for the sender.

    `resolve_run(run_id) -> Path` maps the page's run ids to run folders (raising `UsageError` for unknown
    ones); `wake()` is called (from the generator thread) whenever something new is ready to send.
    """

    def __init__(self, pool: DreamerPool, resolve_run: Callable[[str], Path], wake: Callable[[], None],
                 describe_run: Callable[[str], dict] | None = None, writer_factory=None):
        self._pool = pool
        self._resolve_run = resolve_run
        self._describe_run = describe_run or (lambda run_id: {"id": run_id})
        self._writer_factory = writer_factory
        self._lock = threading.Lock()  # guards _controls
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._controls = Controls()
        self._mailbox = Mailbox(wake)
        self.take_frame, self.take_events = self._mailbox.take_frame, self._mailbox.take_events  # for the sender
        self.tell = self._mailbox.event  # an answer to a control, in order with the stream's own events
        self._play = _Playback()
        self._thread = threading.Thread(target=self._loop, name="dreamvid-stream", daemon=True)

    produced = property(lambda self: self._mailbox.produced, doc="frames published")
    dropped = property(lambda self: self._mailbox.dropped, doc="frames replaced before the sender took them")

    # ---- control side (any thread) ----

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the thread to end (immediately, without blocking) and, unless timeout is 0, wait for it."""
        self._stopped.set()
        self._changed.set()
        if timeout != 0 and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def apply(self, message: Any) -> None:
        """Apply a control message from the page (see controls.py). Raises UsageError for one that makes no
        sense; then nothing changes."""
        with self._lock:
            current = dataclasses.replace(self._controls)
        changes = read_control(message, current, self._resolve_run)  # outside the lock: it may scan run folders
        with self._lock:
            self._controls.update(changes)
        self._changed.set()

    # ---- generator thread: the loop, one turn per batch ----

    def _loop(self) -> None:
        try:
            self._dream()
        except Exception as exc:  # never let a thread die silently; the page gets one line, the terminal the trace
            self._fail("the dream stopped", exc)
        finally:
            self._end_recording()

    def _dream(self) -> None:
        play = self._play
        while not self._stopped.is_set():
            self._changed.clear()
            controls = self._take_controls()
            if controls.run != play.run_id:
                self._follow_run(controls)
            if play.session is None:
                self._changed.wait(1.0)
                continue
            self._steer(controls)
            fps = self._target_fps(controls)
            if controls.record is not None:
                self._start_recording(controls.record, fps)
            if controls.paused:
                play.next_due = None
                self._changed.wait(1.0)
                continue
            frames = self._generate(fps)
            if frames is not None:
                self._deliver(frames, controls.version, fps)
                self._report_stats(fps)

    def _take_controls(self) -> Controls:
        """This turn's copy of the controls; the one-shot requests (reseed, record) are taken from them."""
        with self._lock:
            controls = dataclasses.replace(self._controls)
            self._controls.reseed = self._controls.record = None
        return controls

    def _follow_run(self, controls: Controls) -> None:
        """Load the run the client asked for (from the shared pool) and open a session on it."""
        play = self._play
        self._end_recording()
        play.run_id, play.dreamer, play.session = controls.run, None, None
        if controls.run is None:
            return
        try:
            dreamer = self._pool.get(self._resolve_run(controls.run))
            session = dreamer.session(temperature=controls.temperature)
        except DreamvidError as exc:
            self._error(str(exc), controls.run)
            return
        except Exception as exc:  # a damaged run: one line for the page, the trace for the terminal
            self._fail("cannot dream this run", exc, run=controls.run)
            return
        play.dreamer, play.session, play.next_due, play.dream_index = dreamer, session, None, 0
        if controls.temperature is None:  # the run's own default becomes the client's setting
            controls.temperature = float(getattr(session, "temperature", 1.0))
            with self._lock:
                if self._controls.temperature is None:
                    self._controls.temperature = controls.temperature
        info = dict(self._describe_run(controls.run))
        info.update(type="ready", run=controls.run, fps=float(dreamer.fps), size=int(dreamer.size),
                    frames=source_count(dreamer), temperature=controls.temperature)
        self._mailbox.event(info)

    def _steer(self, controls: Controls) -> None:
        session = self._play.session
        if controls.temperature is not None and getattr(session, "temperature", None) != controls.temperature:
            session.temperature = controls.temperature
        session.reproject = controls.reproject
        if controls.reseed is not None:
            self._restart(**controls.reseed)

    def _restart(self, seed: int | None, frame_index: int | None) -> None:
        count = source_count(self._play.dreamer)
        if frame_index is not None and frame_index >= count:  # checked before the session changes at all
            self._error(f"frame {frame_index} is outside the run's {count} source frames; choose a frame from 0 to "
                        f"{count - 1}")
            return
        try:
            self._play.session.reseed(seed=seed, frame_index=frame_index)
        except DreamvidError as exc:
            self._error(str(exc))
            return
        self._play.dream_index = 0

    def _target_fps(self, controls: Controls) -> float:
        fps = controls.fps if controls.fps is not None else float(self._play.dreamer.fps) * controls.speed
        return min(max(fps, MIN_FPS), MAX_FPS)

    def _start_recording(self, seconds: float, fps: float) -> None:
        play = self._play
        self._end_recording()
        n = max(1, round(seconds * fps))
        try:
            play.recorder = Recorder(RunDir(play.dreamer.run_dir).dreams_dir, fps, int(play.dreamer.size), n,
                                     self._recorded_callback(play.run_id), self._writer_factory)
        except OSError as exc:
            self._error(f"cannot record: {exc.strerror or exc}")
            return
        self._mailbox.event({"type": "recording", "seconds": seconds, "frames": n, "fps": fps})

    def _end_recording(self) -> None:
        if self._play.recorder is not None:
            self._play.recorder.close()
            self._play.recorder = None

    def _generate(self, fps: float) -> np.ndarray | None:
        """The next batch of frames, or None when the session failed (this dream stops; the connection stays,
        and another run can still be picked)."""
        play = self._play
        k = int(min(MAX_BATCH, max(1, round(fps * BATCH_SECONDS))))
        started = time.perf_counter()
        try:
            frames = play.session.next_frames(k)
        except Exception as exc:
            self._fail("the dream stopped", exc, run=play.run_id)
            play.session = None
            return None
        elapsed = time.perf_counter() - started
        if elapsed > 0:
            rate = len(frames) / elapsed
            play.model_fps = rate if play.model_fps == 0 else 0.8 * play.model_fps + 0.2 * rate
        return frames

    def _deliver(self, frames: np.ndarray, version: int, fps: float) -> None:
        """Encode, pace and publish a batch. A control that arrives while a frame waits for its time cuts the
        batch short; if it changed the picture the waiting frame is dropped too, so the new settings show as
        soon as their first frame exists."""
        play = self._play
        first, play.dream_index = play.dream_index, play.dream_index + len(frames)
        for offset, frame in enumerate(frames):
            if self._stopped.is_set():
                return
            jpeg = encode_jpeg(frame)
            interrupted = self._pace(fps)
            if interrupted and self._outdated(version):
                play.next_due = None
                return
            self._show(frame, jpeg, version, first + offset, fps)
            if interrupted:
                return

    def _pace(self, fps: float) -> bool:
        """Wait until the next frame is due; True when a control came in meanwhile."""
        play = self._play
        now = time.monotonic()
        if play.next_due is None or play.next_due < now - max(2.0 / fps, 0.1):
            play.next_due = now  # fell behind (the model's limit): restart the clock rather than burst
        delay = play.next_due - now
        return delay > 0 and self._changed.wait(delay)

    def _outdated(self, version: int) -> bool:
        """Whether frames made under `version` no longer show what the client asked for."""
        with self._lock:
            c = self._controls
            return c.version != version or c.run != self._play.run_id or c.paused or c.reseed is not None

    def _show(self, frame: np.ndarray, jpeg: bytes, version: int, index: int, fps: float) -> None:
        play = self._play
        self._mailbox.publish(play.seq, version, index, jpeg)
        play.seq += 1
        play.next_due += 1.0 / fps
        if play.recorder is not None:
            play.recorder.push(frame)
            if play.recorder.done:
                play.recorder = None

    def _report_stats(self, fps: float) -> None:
        play, now = self._play, time.monotonic()
        if now - play.stats_at < 1.0:
            return
        produced = self._mailbox.produced
        shown_fps = (produced - play.produced_at_stats) / (now - play.stats_at)
        self._mailbox.stats({"type": "stats", "fps": round(shown_fps, 1), "target_fps": round(fps, 2),
                             "model_fps": round(play.model_fps, 1), "dropped": self._mailbox.dropped,
                             "frames": produced})
        play.stats_at, play.produced_at_stats = now, produced

    def _fail(self, what: str, exc: Exception, run: str | None = None) -> None:
        """An unexpected failure: the trace to the terminal, one line to the page."""
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        self._error(f"{what}: {type(exc).__name__}: {exc}", run)

    def _error(self, message: str, run: str | None = None) -> None:
        """One line for the page, with the run it is about when there is one."""
        self._mailbox.event({"type": "error", "message": message, **({"run": run} if run is not None else {})})

    def _recorded_callback(self, run_id: str | None):
        def done(path: Path | None, error: str | None) -> None:
            if self._stopped.is_set():
                return
            if path is None:
                self._error(error or "recording failed")
            else:
                self._mailbox.event({"type": "recorded", "run": run_id, "name": path.name,
                                     "url": f"/api/runs/{run_id}/dreams/{path.name}"})
        return done
