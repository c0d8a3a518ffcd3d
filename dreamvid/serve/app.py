"""The studio's web app: a Starlette app with a static page, a WebSocket per live dream, and a JSON API.

Routes
  GET  /                              the page (static, shipped in the package)
  GET  /api/info                      presets, sizes, upload limit, where things are stored
  GET  /api/runs                      runs with status, preview, eval report and recorded dreams
  GET  /api/runs/{id}/preview         newest preview PNG
  GET  /api/runs/{id}/frames/{i}      source frame i (JPEG), for "restart from this frame"
  GET  /api/runs/{id}/report          RUN_DIR/eval/report.html
  GET  /api/runs/{id}/dreams/{name}   a recorded dream, as a download
  POST /api/upload?filename=&name=&preset=&size=&minutes=   body: the video bytes -> a queued training job
  GET  /api/jobs                      the queue, with each job's progress.json
  GET  /api/jobs/{id}/log             loss curves from log.jsonl
  GET  /api/jobs/{id}/preview         the job's newest preview PNG
  POST /api/jobs/{id}/cancel          cancel (queued: dropped; running: SIGINT, then SIGTERM)
  POST /api/jobs/{id}/resume          queue a stopped job again (training resumes from its checkpoint)
  POST /api/jobs/{id}/remove          forget a finished job
  WS   /ws/dream                      the live dream: JSON controls in, binary frames + JSON events out
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import DreamvidError, UsageError
from .jobs import JobManager, new_job_id
from .runs import DREAM_NAME, RunRegistry, is_run, latest_preview, loss_curves, safe_name
from .streaming import DreamerPool, DreamStream, encode_jpeg, source_count, source_frame

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 2 * 1024 ** 3
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
       "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dreamvid" / "studio"


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return f"{n} bytes"


def check_video(path: Path, shown_name: str | None = None) -> None:
    """Decode the file (not its name) to be sure it is a video: probe it, then read one frame.

    Errors name the file as the user called it (`shown_name`), not by where the server stored it."""
    from .. import video

    shown = shown_name or Path(path).name
    try:
        try:
            video.probe(path)
            first = next(iter(video.read_frames(path, size=32)), None)
        except DreamvidError as exc:
            raise DreamvidError(str(exc).replace(str(path), shown)) from None
        except Exception as exc:  # the decoder's own complaint, in one line
            raise DreamvidError(f"{shown} is not a video that can be decoded ({type(exc).__name__}: {exc})",
                                "upload a video file such as mp4, mkv, webm, mov or avi") from None
    except DreamvidError as exc:
        if isinstance(exc, UsageError):
            raise DreamvidError(str(exc)) from None
        raise
    if first is None:
        raise DreamvidError(f"{shown} has a video stream but no frame could be decoded from it",
                            "upload a video with at least a few seconds of picture")


class GuardMiddleware:
    """Host and Origin checks for every request and WebSocket, and a custom header on every state change.

    - Host must be a loopback name when the server is bound to loopback (stops DNS-rebinding pages).
    - An Origin header, when present, must be this server (stops other sites' pages driving it, WebSocket
      included).
    - POSTs must carry `X-Dreamvid: 1`, which a cross-site form or simple request cannot add.
    """

    def __init__(self, app, loopback_only: bool):
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        problem = None
        if self.loopback_only and not is_loopback(urlsplit(f"//{host}").hostname or ""):
            problem = "unexpected Host header; open the studio at http://127.0.0.1:PORT"
        origin = headers.get("origin")
        if problem is None and origin and origin != "null" and urlsplit(origin).netloc != host:
            problem = "requests from other sites are not accepted"
        if problem is None and origin == "null":
            problem = "requests from other sites are not accepted"
        if (problem is None and scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS")
                and headers.get("x-dreamvid") != "1"):
            problem = "state-changing requests need the X-Dreamvid: 1 header"
        if problem is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": problem})
            return
        response = JSONResponse({"error": problem}, status_code=403)
        await response(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"), (b"cache-control", b"no-cache")]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", CSP.encode()))
                headers += [(k, v) for k, v in extra if k not in names]
                message = dict(message, headers=headers)
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(run_dirs: list[Path] | None = None, runs_dir: Path | None = None, *, data_dir: Path | None = None,
               host: str = "127.0.0.1", max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
               loader: Callable[[Path], Any] | None = None, train_command: Callable[[dict], list[str]] | None = None,
               start_jobs: bool = True, writer_factory=None) -> Starlette:
    """The studio as a Starlette app (tests drive it directly; `serve` runs it under uvicorn).

    `loader` (run folder -> Dreamer) and `train_command` (job -> argv) replace `dreamvid.dreaming.load` and
    `python -m dreamvid train` in tests.
    """
    data_dir = (Path(data_dir) if data_dir is not None else default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    uploads_dir = data_dir / "uploads"
    uploads_dir.mkdir(exist_ok=True)
    runs_root = (Path(runs_dir).expanduser().resolve() if runs_dir is not None else data_dir / "runs")
    runs_root.mkdir(parents=True, exist_ok=True)
    jobs = JobManager(data_dir, command=train_command)
    registry = RunRegistry(list(run_dirs or []), [runs_root], busy=jobs.active_outputs)
    pool = DreamerPool(loader)

    def resolve(rid: str) -> Path:
        return registry.resolve(rid)

    def describe(rid: str) -> dict:
        path = registry.resolve(rid)
        return {"name": path.name, "id": rid}

    def run_or_404(rid: str) -> Path:
        try:
            return registry.resolve(rid)
        except UsageError:
            raise HTTPException(404, "no such run") from None

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def info(request: Request) -> Response:
        from ..config import PRESETS, SUPPORTED_SIZES

        return JSONResponse({
            "presets": list(PRESETS), "sizes": list(SUPPORTED_SIZES), "default_preset": "default",
            "default_size": 64, "max_upload_bytes": max_upload_bytes, "max_upload": _human(max_upload_bytes),
            "runs_dir": str(runs_root), "data_dir": str(data_dir),
        })

    async def runs(request: Request) -> Response:
        return JSONResponse({"runs": await run_in_threadpool(registry.list)})

    async def run_preview(request: Request) -> Response:
        path = latest_preview(run_or_404(request.path_params["rid"]))
        if path is None:
            raise HTTPException(404, "this run has no preview yet")
        return FileResponse(path, media_type="image/png")

    async def run_frame(request: Request) -> Response:
        run_dir = run_or_404(request.path_params["rid"])
        index = request.path_params["index"]
        dreamer = await run_in_threadpool(pool.get, run_dir)
        n = source_count(dreamer)
        if not 0 <= index < n:
            raise HTTPException(404, f"frame {index} is out of range (the run has {n} source frames)")
        data = await run_in_threadpool(lambda: encode_jpeg(source_frame(dreamer, index), 90))
        return Response(data, media_type="image/jpeg")

    async def run_report(request: Request) -> Response:
        path = run_or_404(request.path_params["rid"]) / "eval" / "report.html"
        if not path.is_file():
            raise HTTPException(404, "this run has no eval report; run `dreamvid eval` on it")
        # The report is a self-contained page: let it run its own scripts, but in an opaque origin.
        return FileResponse(path, media_type="text/html",
                            headers={"content-security-policy": "sandbox allow-scripts allow-popups; "
                                                                "frame-ancestors 'none'"})

    async def run_dream(request: Request) -> Response:
        run_dir = run_or_404(request.path_params["rid"])
        name = request.path_params["name"]
        path = run_dir / "dreams" / name
        if not DREAM_NAME.match(name) or not path.is_file() or path.resolve().parent != (run_dir / "dreams").resolve():
            raise HTTPException(404, "no such recording")
        return FileResponse(path, media_type="video/mp4", filename=name,
                            content_disposition_type="inline" if request.query_params.get("inline") else "attachment")

    async def upload(request: Request) -> Response:
        q = request.query_params
        from ..config import PRESETS, SUPPORTED_SIZES

        original = q.get("filename") or "upload"
        preset = q.get("preset") or "default"
        if preset not in PRESETS:
            raise UsageError(f"unknown preset {preset!r}", f"choose one of {', '.join(PRESETS)}")
        try:
            size = int(q.get("size") or 64)
            minutes = float(q.get("minutes") or 5)
        except ValueError:
            raise UsageError("size and minutes must be numbers") from None
        if size not in SUPPORTED_SIZES:
            raise UsageError(f"size {size} is not supported", f"use one of {', '.join(map(str, SUPPORTED_SIZES))}")
        if not (math.isfinite(minutes) and 0.05 <= minutes <= 24 * 60):
            raise UsageError("minutes must be between 0.05 and 1440")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_upload_bytes:
            raise HTTPException(413, f"the file is {_human(int(length))}, over the {_human(max_upload_bytes)} "
                                     f"upload limit")
        job_id = new_job_id()
        stem = safe_name(Path(original).stem, "upload", 50)
        suffix = safe_name(Path(original).suffix, "", 10)
        stored = uploads_dir / f"{job_id}-{stem}{'.' + suffix if suffix else ''}"
        assert stored.resolve().parent == uploads_dir.resolve()
        partial = stored.with_name("." + stored.name + ".part")
        received = 0
        try:
            with open(partial, "wb") as f:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > max_upload_bytes:
                        raise HTTPException(413, f"the file is over the {_human(max_upload_bytes)} upload limit")
                    f.write(chunk)
            if received == 0:
                raise UsageError("the upload is empty", "choose a video file")
            os.replace(partial, stored)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        try:
            await run_in_threadpool(check_video, stored, Path(original).name[:100])
        except DreamvidError:
            stored.unlink(missing_ok=True)
            raise
        name = safe_name(q.get("name") or Path(original).stem, "run", 60)
        taken = jobs.reserved_outputs()
        out = runs_root / name
        i = 2
        while out.exists() or str(out) in taken:
            out = runs_root / f"{name}-{i}"
            i += 1
        job = jobs.submit(upload=stored, out=out, source_name=original[:200], name=out.name, preset=preset,
                          size=size, minutes=minutes, job_id=job_id)
        return JSONResponse({"job": _public_job(job)}, status_code=201)

    def _public_job(job: dict) -> dict:
        out = Path(job["out"])
        public = {k: job.get(k) for k in ("id", "name", "source", "preset", "size", "minutes", "state", "created",
                                          "started", "finished", "error", "returncode")}
        progress = None
        if job.get("state") not in ("queued",):
            from .jobs import read_json
            progress = read_json(out / "progress.json")
        public["progress"] = progress
        preview = latest_preview(out, prefer="reconstruction") if job.get("state") != "queued" else None
        public["preview"] = f"/api/jobs/{job['id']}/preview?t={int(preview.stat().st_mtime)}" if preview else None
        public["run"] = _run_id_if_run(out)
        return public

    def _run_id_if_run(out: Path) -> str | None:
        from .runs import run_id
        return run_id(out) if is_run(out) else None

    def job_or_404(jid: str) -> dict:
        try:
            return jobs.get(jid)
        except KeyError:
            raise HTTPException(404, "no such job") from None

    async def jobs_list(request: Request) -> Response:
        items = await run_in_threadpool(lambda: [_public_job(j) for j in jobs.list()])
        return JSONResponse({"jobs": items})

    async def job_log(request: Request) -> Response:
        job = job_or_404(request.path_params["jid"])
        curves = await run_in_threadpool(loss_curves, Path(job["out"]) / "log.jsonl")
        return JSONResponse({"curves": curves})

    async def job_preview(request: Request) -> Response:
        job = job_or_404(request.path_params["jid"])
        path = latest_preview(Path(job["out"]), prefer="reconstruction")
        if path is None:
            raise HTTPException(404, "no preview yet")
        return FileResponse(path, media_type="image/png")

    async def job_cancel(request: Request) -> Response:
        job_or_404(request.path_params["jid"])
        job = jobs.cancel(request.path_params["jid"])
        return JSONResponse({"job": _public_job(job)})

    async def job_resume(request: Request) -> Response:
        job_or_404(request.path_params["jid"])
        job = jobs.resume(request.path_params["jid"])
        return JSONResponse({"job": _public_job(job)})

    async def job_remove(request: Request) -> Response:
        job_or_404(request.path_params["jid"])
        jobs.remove(request.path_params["jid"])
        return JSONResponse({"ok": True})

    async def dream_socket(ws: WebSocket) -> None:
        await ws.accept()
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed: the client is gone
                loop.call_soon_threadsafe(wake.set)

        stream = DreamStream(pool, resolve, notify, describe_run=describe, writer_factory=writer_factory)
        stream.start()

        async def sender() -> None:
            while True:
                await wake.wait()
                wake.clear()
                for event in stream.take_events():
                    await ws.send_text(json.dumps(event))
                frame = stream.take_frame()
                if frame is not None:
                    await ws.send_bytes(frame)

        send_task = asyncio.create_task(sender())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    continue
                try:
                    control = json.loads(text)
                    stream.apply(control)
                except ValueError:
                    await ws.send_text(json.dumps({"type": "error", "message": "controls must be JSON"}))
                except DreamvidError as exc:
                    await ws.send_text(json.dumps({"type": "error", "message": str(exc)}))
                if send_task.done():
                    break
        except WebSocketDisconnect:
            pass
        finally:
            stream.stop(timeout=0)  # first, synchronously: the task may be cancelled at the next await
            send_task.cancel()
            with contextlib.suppress(BaseException):
                await send_task
            with contextlib.suppress(BaseException):
                await run_in_threadpool(stream.stop)

    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def on_dreamvid_error(request: Request, exc: DreamvidError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def on_crash(request: Request, exc: Exception) -> Response:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server's terminal has the "
                                      f"details"}, status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if start_jobs:
            jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(jobs.stop)

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/runs", runs),
        Route("/api/runs/{rid}/preview", run_preview),
        Route("/api/runs/{rid}/frames/{index:int}", run_frame),
        Route("/api/runs/{rid}/report", run_report),
        Route("/api/runs/{rid}/dreams/{name}", run_dream),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/jobs", jobs_list),
        Route("/api/jobs/{jid}/log", job_log),
        Route("/api/jobs/{jid}/preview", job_preview),
        Route("/api/jobs/{jid}/cancel", job_cancel, methods=["POST"]),
        Route("/api/jobs/{jid}/resume", job_resume, methods=["POST"]),
        Route("/api/jobs/{jid}/remove", job_remove, methods=["POST"]),
        WebSocketRoute("/ws/dream", dream_socket),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: on_http_error, DreamvidError: on_dreamvid_error,
                                        Exception: on_crash})
    app.add_middleware(SecurityHeaders)
    app.add_middleware(GuardMiddleware, loopback_only=is_loopback(host))
    app.state.jobs = jobs
    app.state.registry = registry
    app.state.pool = pool
    app.state.data_dir = data_dir
    app.state.runs_root = runs_root
    return app


def serve(run_dirs: list[Path], runs_dir: Path | None = None, host: str = "127.0.0.1", port: int = 7860,
          data_dir: Path | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD) -> None:
    """Run the studio until Ctrl-C. Raises UsageError for a folder that is not a run or a port in use."""
    import socket

    import uvicorn

    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UsageError(f"{run_dir} does not exist or is not a folder", "pass a RUN_DIR made by `dreamvid train`")
        if not is_run(run_dir):
            raise UsageError(f"{run_dir} is not a run (no config.json)", "pass a RUN_DIR made by `dreamvid train`")
    if runs_dir is not None and Path(runs_dir).exists() and not Path(runs_dir).is_dir():
        raise UsageError(f"--runs-dir {runs_dir} is not a folder")
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port", "use a number from 1 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe_socket:
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind((host.strip("[]"), port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                             "pass --port with a free port, or stop the program using it") from None
    if not is_loopback(host):
        print(f"warning: the studio is bound to {host}, so anyone who can reach this machine on port {port} can "
              f"watch, upload videos and start training. It has no login. Bind 127.0.0.1 (the default) unless "
              f"that is what you want.", file=sys.stderr)
    _tune_threads()
    try:
        app = create_app(run_dirs, runs_dir, data_dir=data_dir, host=host, max_upload_bytes=max_upload_bytes)
    except OSError as exc:
        raise DreamvidError(f"cannot use the studio's data folder ({exc})",
                            "pass a writable data folder") from None
    shown = f"[{host}]" if ":" in host else host
    print(f"dreamvid studio on http://{shown}:{port}/  (data: {app.state.data_dir}, new runs: "
          f"{app.state.runs_root}; Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning", ws_max_size=1 << 20,
                timeout_graceful_shutdown=5)


def _tune_threads() -> None:
    """One torch thread per op: every client has its own generator thread, and on a few cores intra-op
    threads would only fight over them."""
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # torch missing or already running parallel work
        pass
