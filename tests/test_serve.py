"""The studio's server: HTTP API, live dream WebSocket, uploads, the training queue, safety checks.

A real tiny run is trained once per session with the CLI (`python -m dreamvid train --preset tiny`); the stream
tests dream from it through the real model and decode the JPEG frames the server sends.
"""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import uvicorn
from starlette.testclient import TestClient
from websockets.sync.client import connect

from synthetic import make_video

from dreamvid.errors import UsageError
from dreamvid.serve.app import create_app
from dreamvid.serve.jobs import JobManager
from dreamvid.serve.limits import Limits
from dreamvid.serve.runs import safe_name
from dreamvid.serve.streaming import FRAME_HEADER, DreamerPool, DreamStream

BASE = "http://127.0.0.1"
WS = "ws://127.0.0.1/ws/dream"
MUTATE = {"X-Dreamvid": "1"}


def train_tiny_run(base: Path) -> Path:
    """Train (once per test session, shared by the serve test modules) a tiny run at 32 px."""
    run = base / "serve-tiny-run"
    if (run / "rnn.safetensors").is_file():
        return run
    clip = make_video(base / "serve-clip.mp4", n_frames=72, width=48, height=48, fps=24)
    result = subprocess.run([sys.executable, "-m", "dreamvid", "train", str(clip), "-o", str(run), "--preset", "tiny",
                             "--size", "32", "--minutes", "0.15", "--quiet"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.getbasetemp())


@pytest.fixture
def client(tiny_run, tmp_path):
    app = create_app([tiny_run], None, data_dir=tmp_path / "data", limits=Limits(max_upload_bytes=5_000_000))
    with TestClient(app, base_url=BASE) as c:
        c.app_state = app.state
        yield c


@contextlib.contextmanager
def running_server(app):
    """The app under uvicorn on a free loopback port, in a thread: yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the studio server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


class NetSocket:
    """A real WebSocket client (the `websockets` library, over TCP) with the test client's receive/send names."""

    def __init__(self, ws):
        self.ws = ws

    def receive(self) -> dict:
        message = self.ws.recv(timeout=20)
        return {"bytes": message} if isinstance(message, bytes) else {"text": message}

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send_bytes(self, data: bytes) -> None:
        self.ws.send(data)


def run_id_of(client) -> str:
    runs = client.get("/api/runs").json()["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "ready", runs
    return runs[0]["id"]


class Receiver:
    """Reads a dream socket: decoded frames with their versions, and JSON events."""

    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []

    def frames(self, n: int, timeout: float = 20.0) -> list[tuple[int, int, np.ndarray]]:
        """The next n frames as (version, number in the dream, BGR image)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            assert time.monotonic() < deadline, f"only {len(out)} frames in {timeout} s; events {self.events}"
            message = self.ws.receive()
            if message.get("bytes") is not None:
                _, version, index = FRAME_HEADER.unpack_from(message["bytes"])
                image = cv2.imdecode(np.frombuffer(message["bytes"][FRAME_HEADER.size:], np.uint8), cv2.IMREAD_COLOR)
                out.append((version, index, image))
            elif message.get("text") is not None:
                self.events.append(json.loads(message["text"]))
        return out

    def event(self, kind: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event["type"] == kind:
                    return self.events.pop(i)
            assert time.monotonic() < deadline, f"no {kind!r} event in {timeout} s; events {self.events}"
            message = self.ws.receive()
            if message.get("text") is not None:
                self.events.append(json.loads(message["text"]))


# ---------- page, runs, gallery ----------

def test_page_assets_and_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<canvas id="dream"' in page.text and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("app.js", "style.css", "index.html"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert "http" not in client.get("/static/app.js").text.replace("https:", "")  # no CDN, nothing fetched
    info = client.get("/api/info").json()
    assert "tiny" in info["presets"] and 32 in info["sizes"] and info["max_upload_bytes"] == 5_000_000


def test_runs_gallery_preview_frames_report_and_dreams(client, tiny_run):
    rid = run_id_of(client)
    run = client.get("/api/runs").json()["runs"][0]
    assert run["name"] == tiny_run.name and run["preset"] == "tiny" and run["size"] == 32
    preview = client.get(run["preview"])
    assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"
    frame = client.get(f"/api/runs/{rid}/frames/0")
    image = cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR)
    assert frame.headers["content-type"] == "image/jpeg" and image.shape == (32, 32, 3)
    assert client.get(f"/api/runs/{rid}/frames/100000").status_code == 404
    assert client.get("/api/runs/notarun/preview").json() == {"error": "no such run"}
    assert run["report"] is None and client.get(f"/api/runs/{rid}/report").status_code == 404
    (tiny_run / "eval").mkdir(exist_ok=True)
    (tiny_run / "eval" / "report.html").write_text("<html><body>report</body></html>")
    try:
        run = client.get("/api/runs").json()["runs"][0]
        report = client.get(run["report"])
        assert report.status_code == 200 and "report" in report.text
        assert report.headers["content-security-policy"].startswith("sandbox")
    finally:
        (tiny_run / "eval" / "report.html").unlink()
        (tiny_run / "eval").rmdir()
    # Recorded dreams are only ever served from RUN_DIR/dreams, by plain names.
    for bad in ("..%2Fconfig.json", "../config.json", ".hidden.mp4", "config.json"):
        assert client.get(f"/api/runs/{rid}/dreams/{bad}").status_code == 404


# ---------- the live dream ----------

def test_stream_controls_and_recording(client, tiny_run):
    rid = run_id_of(client)
    with client.websocket_connect(WS) as ws:
        rx = Receiver(ws)
        ws.send_text(json.dumps({"type": "start", "run": rid, "fps": 60, "v": 1}))
        ready = rx.event("ready")
        assert ready["size"] == 32 and ready["frames"] > 0 and ready["fps"] > 0
        frames = rx.frames(12)
        assert all(image.shape == (32, 32, 3) for _, _, image in frames)
        assert [index for _, index, _ in frames] == sorted(index for _, index, _ in frames)
        assert any(np.abs(frames[0][2].astype(int) - image.astype(int)).mean() > 0 for _, _, image in frames[1:])

        # A control that changes the picture: frames after it carry its version.
        ws.send_text(json.dumps({"type": "set", "temperature": 2.0, "v": 2}))
        sent = time.monotonic()
        while rx.frames(1)[0][0] < 2:
            pass
        assert time.monotonic() - sent < 2.0

        # Bad controls get a one-line error and the stream goes on.
        ws.send_text(json.dumps({"type": "set", "temperature": -1}))
        assert "temperature" in rx.event("error")["message"]
        ws.send_text(json.dumps({"type": "set", "reproject": "yes"}))
        assert rx.event("error")["message"] == "reproject must be true or false, got 'yes'"
        ws.send_text("not json")
        assert rx.event("error")["message"] == "controls must be JSON"
        ws.send_text(json.dumps({"type": "start", "run": "nope"}))
        assert "no such run" in rx.event("error")["message"]
        rx.frames(3)

        ws.send_text(json.dumps({"type": "reseed", "frame_index": 5, "v": 3}))
        while rx.frames(1)[0][0] < 3:
            pass

        # Pause: frames stop; play: they come back.
        ws.send_text(json.dumps({"type": "pause", "paused": True, "v": 4}))
        time.sleep(0.3)
        ws.send_text(json.dumps({"type": "pause", "paused": False, "v": 5}))
        while rx.frames(1)[0][0] < 5:
            pass

        ws.send_text(json.dumps({"type": "record", "seconds": 0.5}))
        assert rx.event("recording")["frames"] == 30
        recorded = rx.event("recorded")
    path = tiny_run / "dreams" / recorded["name"]
    try:
        from dreamvid.video import probe
        info = probe(path)
        assert info.width == info.height and info.width >= 256  # upscaled from 32 px
        download = client.get(recorded["url"])
        assert download.status_code == 200 and download.content == path.read_bytes()
        assert download.headers["content-disposition"].startswith("attachment")
        assert client.get("/api/runs").json()["runs"][0]["dreams"][0]["name"] == recorded["name"]
    finally:
        path.unlink(missing_ok=True)


def dream_after_reseed(rx: Receiver, version: int, n: int = 12) -> dict[int, bytes]:
    """Frames of the dream that control `version` restarted, by their number in the dream. (The tests ask for
    30 fps: a test client that reads slower than the stream gets frames dropped, and fewer frames in common.)"""
    frames: dict[int, bytes] = {}
    while len(frames) < n:
        (v, index, image), = rx.frames(1)
        if v == version:
            frames[index] = image.tobytes()
    return frames


def test_temperature_changes_the_dream_and_a_seed_replays_it(client):
    rid = run_id_of(client)
    with client.websocket_connect(WS) as ws:
        rx = Receiver(ws)
        ws.send_text(json.dumps({"type": "start", "run": rid, "fps": 30, "temperature": 0.05, "v": 1}))
        rx.event("ready")
        passes = {}
        for version, temperature in ((2, 0.05), (3, 2.5), (4, 0.05)):
            ws.send_text(json.dumps({"type": "set", "temperature": temperature}))
            ws.send_text(json.dumps({"type": "reseed", "seed": 7, "frame_index": 3, "v": version}))
            passes[version] = dream_after_reseed(rx, version)
    calm, wild, calm_again = passes[2], passes[3], passes[4]
    assert min(calm) == 0 and min(wild) == 0
    same = [i for i in calm if i in calm_again]
    assert len(same) >= 8 and all(calm[i] == calm_again[i] for i in same)  # a seed replays its dream exactly
    common = [i for i in calm if i in wild]
    assert len(common) >= 8 and sum(calm[i] != wild[i] for i in common) >= 0.9 * len(common)


def test_reprojection_changes_the_dream_and_switching_it_off_replays_the_plain_one(client):
    rid = run_id_of(client)
    with client.websocket_connect(WS) as ws:
        rx = Receiver(ws)
        ws.send_text(json.dumps({"type": "start", "run": rid, "fps": 30, "v": 1}))
        rx.event("ready")
        passes = {}
        for version, reproject in ((2, False), (3, True), (4, False)):
            ws.send_text(json.dumps({"type": "set", "reproject": reproject}))
            ws.send_text(json.dumps({"type": "reseed", "seed": 7, "frame_index": 3, "v": version}))
            passes[version] = dream_after_reseed(rx, version)
    plain, reprojected, plain_again = passes[2], passes[3], passes[4]
    same = [i for i in plain if i in plain_again]
    assert len(same) >= 8 and all(plain[i] == plain_again[i] for i in same)
    common = [i for i in plain if i in reprojected and i > 0]
    assert len(common) >= 8 and sum(plain[i] != reprojected[i] for i in common) >= 0.9 * len(common)


def test_slow_client_drops_frames_and_does_not_stall_others(client):
    rid = run_id_of(client)
    with client.websocket_connect(WS) as slow, client.websocket_connect(WS) as fast:
        slow.send_text(json.dumps({"type": "start", "run": rid, "fps": 60}))
        fast.send_text(json.dumps({"type": "start", "run": rid, "fps": 30}))
        rx = Receiver(fast)
        rx.event("ready")
        rx.frames(3)
        started = time.monotonic()
        got = rx.frames(30)  # one second of stream at 30 fps while the other client reads nothing
        elapsed = time.monotonic() - started
        assert len(got) == 30 and elapsed < 3.0, elapsed


def test_stream_keeps_only_the_newest_frame():
    """A client that never reads costs one frame of memory: the rest are dropped and counted."""

    class Session:
        temperature = 1.0

        def next_frames(self, n):
            return np.zeros((n, 16, 16, 3), np.uint8)

    class Dreamer:
        fps, size, run_dir, cache = 120.0, 16, Path("."), None
        latents = {"mu": np.zeros((10, 4))}

        def session(self, temperature=None):
            return Session()

    stream = DreamStream(DreamerPool(loader=lambda path: Dreamer()), resolve_run=lambda rid: Path("."),
                         wake=lambda: None)
    stream.start()
    try:
        stream.apply({"type": "start", "run": "x", "fps": 120})
        time.sleep(0.6)
        assert stream.produced > 20 and stream.dropped >= stream.produced - 1
        assert stream.take_frame() is not None and stream.take_frame() is None
        with pytest.raises(UsageError):
            stream.apply({"type": "set", "fps": 1e9})
        with pytest.raises(UsageError):
            stream.apply({"type": "record", "seconds": 10_000})
    finally:
        stream.stop()
    assert not stream._thread.is_alive()


# ---------- the control table, over a real WebSocket ----------

@pytest.fixture(scope="module")
def live(tiny_run, tmp_path_factory):
    """The studio under uvicorn, and the tiny run's id."""
    app = create_app([tiny_run], None, data_dir=tmp_path_factory.mktemp("live-data"), start_jobs=False)
    with running_server(app) as url:
        with TestClient(app, base_url=BASE) as c:
            rid = run_id_of(c)
        yield url.replace("http://", "ws://") + "/ws/dream", rid


@contextlib.contextmanager
def dream_socket(live, **start):
    """A connected viewer whose dream has started (at 30 fps unless `start` says otherwise)."""
    url, rid = live
    with connect(url, open_timeout=20) as ws:
        rx = Receiver(NetSocket(ws))
        rx.ws.send_text(json.dumps({"type": "start", "run": rid, "fps": 30, "v": 1, **start}))
        rx.event("ready")
        yield rx


def frame_with_version(rx: Receiver, version: int) -> tuple[int, int]:
    """Read frames until one carries `version`; (version, number in the dream) of it. Never a newer one first."""
    while True:
        (v, index, _), = rx.frames(1)
        assert v <= version, f"a frame with version {v} came before {version}"
        if v == version:
            return v, index


def test_every_control_accepts_its_valid_values(live, tiny_run):
    with dream_socket(live, temperature=0.5, speed=2, paused=False, reproject=False, seed=1, frame_index=0) as rx:
        version, paused = 1, False
        for message in ({"type": "set", "temperature": 0.01}, {"type": "set", "temperature": 5},
                        {"type": "set", "speed": 0.05}, {"type": "set", "speed": 16}, {"type": "set", "fps": 0.5},
                        {"type": "set", "fps": 120, "speed": 1}, {"type": "set", "reproject": True},
                        {"type": "set", "reproject": False, "temperature": 1.0, "fps": 30},
                        {"type": "pause", "paused": True}, {"type": "pause", "paused": False},
                        {"type": "pause"}, {"type": "pause"},  # toggles: paused, then playing again
                        {"type": "reseed"}, {"type": "reseed", "seed": None, "frame_index": None},
                        {"type": "reseed", "seed": 4294967295, "frame_index": 0},
                        {"type": "reseed", "seed": 0, "frame_index": 3.0}):
            version += 1
            rx.ws.send_text(json.dumps({**message, "v": version}))
            if message["type"] == "pause":
                paused = message.get("paused", not paused)
                if paused:  # no frame until the next message plays again
                    continue
            _, index = frame_with_version(rx, version)
            if message["type"] == "reseed":
                assert index < 3  # a new dream counts from its first frame (one or two may be dropped on the way)
        assert not [e for e in rx.events if e["type"] == "error"], rx.events
        rx.ws.send_text(json.dumps({"type": "start"}))  # no run: the current one goes on
        rx.ws.send_text(json.dumps({"type": "run", "run": live[1]}))  # the same run: nothing to reload
        rx.frames(3)
        rx.ws.send_text(json.dumps({"type": "record", "seconds": 0.2}))
        assert rx.event("recording")["frames"] == 6
        (tiny_run / "dreams" / rx.event("recorded")["name"]).unlink()
        assert not [e for e in rx.events if e["type"] == "error"], rx.events


def test_a_viewer_without_a_run_picks_one_with_the_run_control(live):
    url, rid = live
    with connect(url, open_timeout=20) as ws:
        rx = Receiver(NetSocket(ws))
        rx.ws.send_text(json.dumps({"type": "start", "temperature": 0.7}))  # settings first, no run yet
        rx.ws.send_text(json.dumps({"type": "run", "run": rid, "v": 3}))
        assert rx.event("ready")["temperature"] == 0.7
        assert frame_with_version(rx, 3)[0] == 3


BAD_CONTROLS = [  # (message as sent, what the error says)
    ("not json", "controls must be JSON"),
    (b"\x00\x01", "controls must be JSON text, not binary"),
    ("[" * 100_000 + "]" * 100_000, "controls must be JSON"),   # deeper than Python's stack
    ({"type": "reseed", "seed": 2 ** 64}, "seed must be a whole number from 0 to 4294967295"),
    ([1, 2], "a control message must be a JSON object"),
    ({"temperature": 1}, "unknown control None"),
    ({"type": "jump"}, "unknown control 'jump'; send one of start, run, set, pause, reseed, record"),
    ({"type": "set", "temprature": 1}, "set takes no 'temprature'"),
    ({"type": "start", "run": "nope"}, "no such run here"),
    ({"type": "start", "run": 5}, "run must be a run id, got 5"),
    ({"type": "start", "temperature": 0}, "temperature must be between 0.01 and 5, got 0"),
    ({"type": "start", "speed": 100}, "speed must be between 0.05 and 16, got 100"),
    ({"type": "start", "paused": "yes"}, "paused must be true or false, got 'yes'"),
    ({"type": "start", "seed": -1}, "seed must be a whole number from 0 to 4294967295, got -1"),
    ({"type": "run"}, "run needs the id of a run"),
    ({"type": "run", "run": "nope"}, "no such run here"),
    ({"type": "set"}, "set needs a setting"),
    ({"type": "set", "temperature": 6}, "temperature must be between 0.01 and 5, got 6"),
    ({"type": "set", "temperature": "hot"}, "temperature must be a number, got 'hot'"),
    ({"type": "set", "temperature": True}, "temperature must be a number, got True"),
    ('{"type": "set", "temperature": NaN}', "temperature must be a finite number"),
    ({"type": "set", "speed": 0.01}, "speed must be between 0.05 and 16, got 0.01"),
    ({"type": "set", "fps": 0.1}, "fps must be between 0.5 and 120, got 0.1"),
    ({"type": "set", "fps": 1000}, "fps must be between 0.5 and 120, got 1000"),
    ({"type": "set", "reproject": 1}, "reproject must be true or false, got 1"),
    ({"type": "pause", "paused": "no"}, "paused must be true or false, got 'no'"),
    ({"type": "reseed", "seed": "7"}, "seed must be a whole number, got '7'"),
    ({"type": "reseed", "seed": 1.5}, "seed must be a whole number, got 1.5"),
    ({"type": "reseed", "seed": 2 ** 40}, "seed must be a whole number from 0 to 4294967295"),
    ({"type": "reseed", "frame_index": -1}, "frame_index must be a whole number from 0 to 4294967295, got -1"),
    ({"type": "reseed", "frame_index": 10 ** 6}, "frame 1000000 is outside the run's"),
    ({"type": "record", "seconds": 0}, "seconds must be more than 0 and at most 120"),
    ({"type": "record", "seconds": 121}, "seconds must be between 0 and 120, got 121"),
    ({"type": "record", "seconds": "ten"}, "seconds must be a number, got 'ten'"),
    ({"type": "set", "temperature": 1, "v": -1}, "v must be a whole number from 0 to 4294967295, got -1"),
    ({"type": "set", "temperature": 1, "v": 2 ** 33}, "v must be a whole number from 0 to 4294967295"),
    ('{"type": "set", "temperature": 1, "v": 1e400}', "v must be a whole number, got inf"),
]


def test_every_bad_control_is_answered_and_changes_nothing(live):
    """Each malformed or out-of-range message gets its own one-line error; the stream goes on, and a message
    with one bad value does not apply its good ones (its version never shows up on a frame)."""
    with dream_socket(live) as rx:
        rx.frames(2)
        for message, expected in BAD_CONTROLS:
            if isinstance(message, bytes):
                rx.ws.send_bytes(message)
            else:
                rx.ws.send_text(message if isinstance(message, str) else json.dumps(message))
            error = rx.event("error")
            assert error["message"].startswith(expected), (message, error)
            assert "Traceback" not in error["message"]
        rx.ws.send_text(json.dumps({"type": "set", "temperature": 2.0, "reproject": "on", "v": 9}))
        assert "reproject" in rx.event("error")["message"]
        rx.ws.send_text(json.dumps({"type": "set", "temperature": 1.0, "v": 10}))
        versions = set()
        while 10 not in versions:
            versions.update(v for v, _, _ in rx.frames(1))
        assert versions <= {1, 10}, versions  # no message above took effect, not even in part
        assert not [e for e in rx.events if e["type"] == "error"], rx.events


# ---------- uploads and safety ----------

def test_upload_rejects_non_video_oversize_and_foreign_requests(client, tmp_path):
    uploads = client.app_state.data_dir / "uploads"
    text = client.post("/api/upload?filename=notes.mp4&preset=tiny&size=32&minutes=0.1", content=b"just text " * 50,
                       headers=MUTATE)
    assert text.status_code == 400 and "notes.mp4" in text.json()["error"] and "not a video" in text.json()["error"]
    assert str(uploads) not in text.json()["error"]  # errors name the user's file, not the server's paths
    assert "Traceback" not in text.text
    big = client.post("/api/upload?filename=big.mp4", content=b"\0" * 5_000_001, headers=MUTATE)
    assert big.status_code == 413 and "limit" in big.json()["error"]
    assert client.post("/api/upload?filename=x.mp4&preset=nope", content=b"x", headers=MUTATE).status_code == 400
    assert client.post("/api/upload?filename=x.mp4&size=33", content=b"x", headers=MUTATE).status_code == 400
    assert client.post("/api/upload?filename=x.mp4&minutes=nan", content=b"x", headers=MUTATE).status_code == 400
    assert client.post("/api/upload?filename=x.mp4", content=b"", headers=MUTATE).status_code == 400
    playlist = client.post("/api/upload?filename=list.m3u8", content=b"#EXTM3U\n/etc/passwd\n", headers=MUTATE)
    assert playlist.status_code == 400 and "not named as a video file" in playlist.json()["error"]
    assert list(uploads.iterdir()) == []
    assert client.get("/api/jobs").json() == {"jobs": []}

    # Cross-site requests: no custom header, a foreign Origin, a foreign Host (DNS rebinding).
    assert client.post("/api/upload?filename=a.mp4", content=b"x").status_code == 403
    assert client.post("/api/upload?filename=a.mp4", content=b"x",
                       headers={**MUTATE, "Origin": "http://evil.example"}).status_code == 403
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 403
    from starlette.websockets import WebSocketDisconnect
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect(WS, headers={"Origin": "http://evil.example"}) as ws:
            ws.receive()


def test_upload_names_are_sanitised_and_stored_under_the_data_folder(tiny_run, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=8, width=32, height=32)
    app = create_app([tiny_run], None, data_dir=tmp_path / "data", start_jobs=False)
    with TestClient(app, base_url=BASE) as c:
        response = c.post("/api/upload", params={"filename": "../../..\\evil/../x y\u00e9.mp4", "name": "../../etc",
                                                 "preset": "tiny", "size": "32", "minutes": "0.1"},
                          content=clip.read_bytes(), headers=MUTATE)
        assert response.status_code == 201, response.text
        job = response.json()["job"]
        assert job["state"] == "queued" and job["name"] == "etc"
        stored = list((tmp_path / "data" / "uploads").iterdir())
        assert len(stored) == 1 and stored[0].name.endswith("-x_ye.mp4")
        (queued,) = app.state.jobs.list()
        assert Path(queued["out"]).parent == tmp_path / "data" / "runs"
        assert Path(queued["upload"]).resolve().parent == (tmp_path / "data" / "uploads").resolve()
    assert safe_name("../../.bashrc") == "bashrc" and safe_name("..") == "upload" and safe_name("a/b\\c.d") == "c.d"


# ---------- the training queue ----------

FAKE_TRAINER = textwrap.dedent("""
    import json, os, signal, sys, time
    out, seconds, outcome = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    os.makedirs(out, exist_ok=True)
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    t0 = time.time()
    while time.time() - t0 < seconds:
        with open(os.path.join(out, "progress.json"), "w") as f:
            json.dump({"stage": "vae", "fraction": (time.time() - t0) / seconds, "eta_s": 1, "finished": False,
                       "error": None}, f)
        with open(os.path.join(out, "log.jsonl"), "a") as f:
            f.write(json.dumps({"stage": "vae", "step": 1, "train_loss": 1.0, "val_loss": 2.0}) + "\\n")
        if stop:
            sys.exit(130)
        time.sleep(0.05)
    if outcome == "fail":
        print("error: the clip has too few frames; use a longer clip", file=sys.stderr)
        sys.exit(1)
    open(os.path.join(out, "config.json"), "w").write("{}")
""")


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_job_queue_runs_one_at_a_time_cancels_and_survives_restart(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    plan = {"a": ("30", "ok"), "b": ("0.3", "fail"), "c": ("0.3", "ok")}

    def command(job):
        seconds, outcome = plan[job["name"]]
        return [sys.executable, str(script), job["out"], seconds, outcome]

    data = tmp_path / "data"
    manager = JobManager(data, command=command, grace_s=5)
    for name in "abc":
        manager.submit(upload=tmp_path / "u", out=tmp_path / "runs" / name, source_name=f"{name}.mp4", name=name,
                       preset="tiny", size=32, minutes=0.1)
    # Before the worker starts, a "restart" sees the same queue.
    assert [j["state"] for j in JobManager(data, command=command).list()] == ["queued"] * 3
    manager.start()
    try:
        wait_for(lambda: manager.list()[0]["state"] == "running", what="job a to start")
        assert [j["state"] for j in manager.list()[1:]] == ["queued", "queued"]
        wait_for(lambda: (tmp_path / "runs" / "a" / "progress.json").exists(), what="progress")
        a = manager.list()[0]["id"]
        started = time.monotonic()
        manager.cancel(a)  # SIGINT: the trainer saves and exits with 130
        wait_for(lambda: manager.list()[0]["state"] == "cancelled", what="cancel")
        assert time.monotonic() - started < 5 and manager.list()[0]["returncode"] == 130
        wait_for(lambda: all(j["state"] in ("done", "failed") for j in manager.list()[1:]), what="b and c")
        a_job, b_job, c_job = manager.list()
        assert b_job["state"] == "failed" and b_job["error"] == "error: the clip has too few frames; use a longer clip"
        assert c_job["state"] == "done" and c_job["returncode"] == 0
        assert c_job["started"] >= b_job["finished"] - 0.01  # one at a time
        with pytest.raises(UsageError):
            manager.cancel(c_job["id"])
        with pytest.raises(UsageError):
            manager.resume(c_job["id"])  # done: nothing to resume
        (tmp_path / "u").write_bytes(b"video")
        (tmp_path / "runs" / "b" / "config.json").write_text("{}")  # training had begun: there is a run to resume
        plan["b"] = ("30", "ok")
        resumed = manager.resume(b_job["id"])  # failed, with a run folder: queued again with --resume
        assert resumed["state"] == "queued" and resumed["resume"] is True and resumed["error"] is None
        manager.cancel(b_job["id"])
        wait_for(lambda: manager.list()[1]["state"] == "cancelled", what="b cancelled again")
    finally:
        manager.stop()
    reloaded = JobManager(data, command=command).list()
    assert [j["state"] for j in reloaded] == ["cancelled", "cancelled", "done"]


def test_jobs_api_progress_curves_and_cancel(tiny_run, tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    clip = make_video(tmp_path / "clip.mp4", n_frames=8, width=32, height=32)
    app = create_app([tiny_run], None, data_dir=tmp_path / "data",
                     train_command=lambda job: [sys.executable, str(script), job["out"], "30", "ok"])
    with TestClient(app, base_url=BASE) as c:
        job = c.post("/api/upload?filename=clip.mp4&preset=tiny&size=32&minutes=0.1", content=clip.read_bytes(),
                     headers=MUTATE).json()["job"]
        wait_for(lambda: (c.get("/api/jobs").json()["jobs"][0]["progress"] or {}).get("stage") == "vae",
                 what="progress in /api/jobs")
        wait_for(lambda: c.get(f"/api/jobs/{job['id']}/log").json()["curves"].get("vae", {}).get("val"),
                 what="curves")
        curves = c.get(f"/api/jobs/{job['id']}/log").json()["curves"]["vae"]
        assert curves["train"][0][1] == 1.0 and curves["val"][0][1] == 2.0
        assert c.post(f"/api/jobs/{job['id']}/cancel").status_code == 403  # no X-Dreamvid header
        assert c.post(f"/api/jobs/{job['id']}/cancel", headers=MUTATE).status_code == 200
        wait_for(lambda: c.get("/api/jobs").json()["jobs"][0]["state"] == "cancelled", what="cancelled")
        assert c.post(f"/api/jobs/{job['id']}/remove", headers=MUTATE).json() == {"ok": True}
        assert c.get("/api/jobs").json() == {"jobs": []}
        assert c.post("/api/jobs/nope/cancel", headers=MUTATE).status_code == 404


# ---------- serve() ----------

def test_serve_checks_arguments_and_warns_off_loopback(tmp_path, tiny_run, monkeypatch, capsys):
    from dreamvid.serve import serve

    with pytest.raises(UsageError, match="not a run"):
        serve([tmp_path], data_dir=tmp_path / "d")
    with pytest.raises(UsageError, match="does not exist"):
        serve([tmp_path / "missing"], data_dir=tmp_path / "d")
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UsageError, match="cannot listen"):
            serve([tiny_run], host="127.0.0.1", port=busy.getsockname()[1], data_dir=tmp_path / "d")
    import uvicorn
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    with pytest.raises(UsageError, match="--allowed-host"):
        serve([tiny_run], host="0.0.0.0", port=7861, data_dir=tmp_path / "d")
    serve([tiny_run], host="0.0.0.0", port=7861, data_dir=tmp_path / "d", limits=Limits(allowed_hosts=("box",)))
    assert calls and calls[0]["host"] == "0.0.0.0"
    assert "warning" in capsys.readouterr().err
    serve([tiny_run], port=7861, data_dir=tmp_path / "d")
    assert "warning" not in capsys.readouterr().err


# ---------- limits: viewers, uploads, queue, data folder, hosts, one studio per data folder ----------

def test_a_viewer_past_the_limit_is_told_the_studio_is_full(tiny_run, tmp_path):
    from starlette.websockets import WebSocketDisconnect
    app = create_app([tiny_run], None, data_dir=tmp_path / "data", start_jobs=False, limits=Limits(max_viewers=2))
    with TestClient(app, base_url=BASE) as c, c.websocket_connect(WS), c.websocket_connect(WS):
        with c.websocket_connect(WS) as third:
            assert json.loads(third.receive_text())["type"] == "full"
            with pytest.raises(WebSocketDisconnect) as closed:
                third.receive_text()
            assert closed.value.code == 1013
    with TestClient(app, base_url=BASE) as c, c.websocket_connect(WS) as again:   # the others left: room again
        again.send_text(json.dumps({"type": "start", "run": run_id_of(c), "v": 1}))
        assert '"full"' not in (again.receive().get("text") or "")


def test_uploads_stop_at_the_queue_and_data_folder_limits(tiny_run, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", n_frames=8, width=32, height=32)
    upload = "/api/upload?filename=clip.mp4&preset=tiny&size=32&minutes=0.1"
    app = create_app([tiny_run], None, data_dir=tmp_path / "data", start_jobs=False,
                     limits=Limits(max_queue=1, max_data_bytes=clip.stat().st_size * 3 // 2))
    with TestClient(app, base_url=BASE) as c:
        assert c.post(upload, content=clip.read_bytes(), headers=MUTATE).status_code == 201
        queue_full = c.post(upload, content=clip.read_bytes(), headers=MUTATE)
        assert queue_full.status_code == 429 and "queue is full" in queue_full.json()["error"]
        c.post(f"/api/jobs/{c.get('/api/jobs').json()['jobs'][0]['id']}/cancel", headers=MUTATE)
        folder_full = c.post(upload, content=clip.read_bytes(), headers=MUTATE)
        assert folder_full.status_code == 413 and "limit" in folder_full.json()["error"]


def test_off_loopback_only_the_allowed_host_names_are_answered(tiny_run, tmp_path):
    app = create_app([tiny_run], None, data_dir=tmp_path / "data", start_jobs=False, host="0.0.0.0",
                     limits=Limits(allowed_hosts=("studio.example",)))
    with TestClient(app, base_url="http://studio.example") as c:
        assert c.get("/api/runs").status_code == 200
        assert c.get("/api/runs", headers={"Host": "evil.example"}).status_code == 403
        assert c.get("/api/runs", headers={"Host": "127.0.0.1:7860"}).status_code == 200


def test_one_studio_per_data_folder_and_an_unreadable_queue_is_kept_aside(tmp_path, capsys):
    from dreamvid.errors import DreamvidError
    from dreamvid.serve.limits import data_folder_lock
    with data_folder_lock(tmp_path / "data"):
        with pytest.raises(DreamvidError, match="another dreamvid serve"):
            with data_folder_lock(tmp_path / "data"):
                pass
    (tmp_path / "data" / "jobs.json").write_text('{"jobs": [{"id": "x", "state": "queu')   # a torn write
    jobs = JobManager(tmp_path / "data")
    assert jobs.list() == [] and not (tmp_path / "data" / "jobs.json").exists()
    aside, = (tmp_path / "data").glob("jobs.json.unreadable-*")
    assert aside.read_text().startswith('{"jobs"') and "moved it to" in capsys.readouterr().err


def test_two_recordings_in_one_second_get_two_names(tmp_path):
    from dreamvid.serve.streaming import reserve_name
    first, first_marker = reserve_name(tmp_path, "dream-20260101-000000")
    second, _ = reserve_name(tmp_path, "dream-20260101-000000")
    assert first != second and first_marker.exists() and not first.exists()


def test_an_upload_past_the_concurrent_limit_is_told_to_wait(tiny_run, tmp_path):
    import asyncio

    import httpx
    clip = make_video(tmp_path / "clip.mp4", n_frames=8, width=32, height=32).read_bytes()
    upload = "/api/upload?filename=clip.mp4&preset=tiny&size=32&minutes=0.1"
    app = create_app([tiny_run], None, data_dir=tmp_path / "data", start_jobs=False, limits=Limits(max_uploads=1))

    async def two_uploads() -> tuple[int, httpx.Response]:
        release = asyncio.Event()

        async def arriving_slowly():
            yield clip[:100]
            await release.wait()
            yield clip[100:]

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            first = asyncio.create_task(client.post(upload, content=arriving_slowly(), headers=MUTATE))
            await asyncio.sleep(0.5)
            second = await client.post(upload, content=clip, headers=MUTATE)
            release.set()
            return (await first).status_code, second

    first, second = asyncio.run(two_uploads())
    assert second.status_code == 429 and "uploads are arriving already" in second.json()["error"]
    assert first == 201
