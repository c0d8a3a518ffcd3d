"""The studio's web app: one `Studio` (the runs, the training queue, the loaded models, the limits) whose
methods are the routes of `Studio.ROUTES`, built into a Starlette app by `Studio.app()`."""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import DreamvidError, UsageError
from ..rundir import RunDir
from .guard import REPORT_CSP, GuardMiddleware, SecurityHeaders, is_loopback
from .jobs import JobManager, new_job_id
from .limits import Limits, data_folder_lock, folder_bytes
from .runs import RunRegistry, dream_path, latest_preview, loss_curves, run_id
from .streaming import DreamerPool, DreamStream, encode_jpeg, source_count, source_frame
from .uploads import UploadForm, human_size, keep_if_video, receive, refuse_declared_size

STATIC_DIR = Path(__file__).parent / "static"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dreamvid" / "studio"


class Studio:
    """Everything the routes share. `loader` (run folder -> Dreamer) and `train_command` (job -> argv) replace
    `dreamvid.dreaming.load` and `python -m dreamvid train` in tests; `writer_factory` the recordings' writer."""

    ROUTES = (  # (method, path, handler); "WS" is a WebSocket
        ("GET", "/", "index"),                                     # the page (static, shipped in the package)
        ("GET", "/api/info", "info"),                              # presets, sizes, upload limit, where things are
        ("GET", "/api/runs", "runs"),                              # runs: status, preview, report, recorded dreams
        ("GET", "/api/runs/{rid}/preview", "run_preview"),         # newest preview PNG
        ("GET", "/api/runs/{rid}/frames/{index:int}", "run_frame"),  # source frame (JPEG): "restart from here"
        ("GET", "/api/runs/{rid}/report", "run_report"),           # RUN_DIR/eval/report.html
        ("GET", "/api/runs/{rid}/dreams/{name}", "run_dream"),     # a recorded dream, as a download
        ("POST", "/api/upload", "upload"),  # body: the video; query: filename, name, preset, size, minutes -> a job
        ("GET", "/api/jobs", "jobs_list"),                         # the queue, with each job's progress.json
        ("GET", "/api/jobs/{jid}/log", "job_log"),                 # loss curves from log.jsonl
        ("GET", "/api/jobs/{jid}/preview", "job_preview"),         # the job's newest preview PNG
        ("POST", "/api/jobs/{jid}/cancel", "job_cancel"),          # queued: dropped; running: SIGINT, then SIGTERM
        ("POST", "/api/jobs/{jid}/resume", "job_resume"),          # queue a stopped job again, from its checkpoint
        ("POST", "/api/jobs/{jid}/remove", "job_remove"),          # forget a finished job
        ("WS", "/ws/dream", "dream_socket"),                       # JSON controls in, frames + JSON events out
    )

    def __init__(self, run_dirs: list[Path] | None = None, runs_dir: Path | None = None, *,
                 data_dir: Path | None = None, host: str = "127.0.0.1", limits: Limits = Limits(),
                 loader: Callable[[Path], Any] | None = None, train_command: Callable[[dict], list[str]] | None = None,
                 start_jobs: bool = True, writer_factory=None):
        self.data_dir = (Path(data_dir) if data_dir is not None else default_data_dir()).expanduser().resolve()
        self.uploads_dir = self.data_dir / "uploads"
        self.runs_root = Path(runs_dir).expanduser().resolve() if runs_dir is not None else self.data_dir / "runs"
        for folder in (self.data_dir, self.uploads_dir, self.runs_root):
            folder.mkdir(parents=True, exist_ok=True)
        self.loopback_only = is_loopback(host)
        self.limits = limits
        self.viewers = self.uploads = 0   # changed on the event loop only
        self.start_jobs = start_jobs
        self.writer_factory = writer_factory
        self.jobs = JobManager(self.data_dir, command=train_command)
        self.registry = RunRegistry(list(run_dirs or []), [self.runs_root], busy=self.jobs.active_outputs)
        self.pool = DreamerPool(loader)

    def app(self) -> Starlette:
        routes = [WebSocketRoute(path, getattr(self, name)) if method == "WS"
                  else Route(path, getattr(self, name), methods=[method]) for method, path, name in self.ROUTES]
        routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"))
        app = Starlette(routes=routes, lifespan=self.lifespan,
                        exception_handlers={HTTPException: on_http_error, DreamvidError: on_dreamvid_error,
                                            Exception: on_crash})
        app.add_middleware(SecurityHeaders)
        app.add_middleware(GuardMiddleware, loopback_only=self.loopback_only, allowed_hosts=self.limits.allowed_hosts)
        app.state.jobs, app.state.data_dir = self.jobs, self.data_dir  # for tests
        return app

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        if self.start_jobs:
            self.jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(self.jobs.stop)

    # ---- lookups ----

    def run_or_404(self, rid: str) -> Path:
        try:
            return self.registry.resolve(rid)
        except UsageError:
            raise HTTPException(404, "no such run") from None

    def job_or_404(self, jid: str) -> dict:
        try:
            return self.jobs.get(jid)
        except KeyError:
            raise HTTPException(404, "no such job") from None

    def describe_run(self, rid: str) -> dict:
        return {"name": self.registry.resolve(rid).name, "id": rid}

    # ---- the page and the runs ----

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def info(self, request: Request) -> Response:
        from ..config import PRESETS, SUPPORTED_SIZES

        return JSONResponse({
            "presets": list(PRESETS), "sizes": list(SUPPORTED_SIZES), "default_preset": "default",
            "default_size": 64, "max_upload_bytes": self.limits.max_upload_bytes,
            "max_upload": human_size(self.limits.max_upload_bytes), "runs_dir": str(self.runs_root),
            "data_dir": str(self.data_dir),
        })

    async def runs(self, request: Request) -> Response:
        return JSONResponse({"runs": await run_in_threadpool(self.registry.list)})

    async def run_preview(self, request: Request) -> Response:
        return _png(latest_preview(self.run_or_404(request.path_params["rid"])), "this run has no preview yet")

    async def run_frame(self, request: Request) -> Response:
        run_dir = self.run_or_404(request.path_params["rid"])
        index = request.path_params["index"]
        dreamer = await run_in_threadpool(self.pool.get, run_dir)
        n = source_count(dreamer)
        if not 0 <= index < n:
            raise HTTPException(404, f"frame {index} is out of range (the run has {n} source frames)")
        data = await run_in_threadpool(lambda: encode_jpeg(source_frame(dreamer, index), 90))
        return Response(data, media_type="image/jpeg")

    async def run_report(self, request: Request) -> Response:
        path = RunDir(self.run_or_404(request.path_params["rid"])).report_path()
        if not path.is_file():
            raise HTTPException(404, "this run has no eval report; run `dreamvid eval` on it")
        return FileResponse(path, media_type="text/html", headers={"content-security-policy": REPORT_CSP})

    async def run_dream(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = dream_path(self.run_or_404(request.path_params["rid"]), name)
        if path is None:
            raise HTTPException(404, "no such recording")
        inline = bool(request.query_params.get("inline"))
        return FileResponse(path, media_type="video/mp4", filename=name,
                            content_disposition_type="inline" if inline else "attachment")

    # ---- uploads and the training queue ----

    async def upload(self, request: Request) -> Response:
        form = UploadForm.read(request.query_params)
        limit = await run_in_threadpool(self.upload_room)
        refuse_declared_size(request.headers.get("content-length"), limit)
        if self.uploads >= self.limits.max_uploads:
            raise HTTPException(429, f"{self.uploads} uploads are arriving already; wait for one to finish")
        self.uploads += 1
        try:
            job_id = new_job_id()
            stored = form.stored_path(self.uploads_dir, job_id)
            await receive(request.stream(), stored, limit)
        finally:
            self.uploads -= 1
        await run_in_threadpool(keep_if_video, stored, form.shown_name)
        out = self.new_run_folder(form.run_name)
        job = self.jobs.submit(upload=stored, out=out, source_name=form.filename[:200], name=out.name,
                               preset=form.preset, size=form.size, minutes=form.minutes, job_id=job_id)
        return JSONResponse({"job": public_job(job)}, status_code=201)

    def upload_room(self) -> int:
        """Bytes the next upload may have: the upload limit, or what the data folder has left; HTTP 429 when
        the queue is full, 507 when the folder is."""
        queued = sum(job.get("state") in ("queued", "running", "cancelling") for job in self.jobs.list())
        if queued >= self.limits.max_queue:
            raise HTTPException(429, f"the training queue is full ({queued} jobs); wait for one to finish")
        left = self.limits.max_data_bytes - folder_bytes(self.data_dir)
        if left <= 0:
            raise HTTPException(507, f"the studio's data folder is full ({human_size(self.limits.max_data_bytes)})")
        return min(self.limits.max_upload_bytes, left)

    def new_run_folder(self, name: str) -> Path:
        """RUNS/name, or name-2, name-3...: never an existing folder, nor one a queued job will write."""
        taken = self.jobs.reserved_outputs()
        out, i = self.runs_root / name, 2
        while out.exists() or str(out) in taken:
            out, i = self.runs_root / f"{name}-{i}", i + 1
        return out

    async def jobs_list(self, request: Request) -> Response:
        items = await run_in_threadpool(lambda: [public_job(j) for j in self.jobs.list()])
        return JSONResponse({"jobs": items})

    async def job_log(self, request: Request) -> Response:
        job = self.job_or_404(request.path_params["jid"])
        return JSONResponse({"curves": await run_in_threadpool(loss_curves, Path(job["out"]))})

    async def job_preview(self, request: Request) -> Response:
        job = self.job_or_404(request.path_params["jid"])
        return _png(latest_preview(Path(job["out"]), prefer="reconstruction"), "no preview yet")

    async def job_cancel(self, request: Request) -> Response:
        return JSONResponse({"job": public_job(self._job_action(request, self.jobs.cancel))})

    async def job_resume(self, request: Request) -> Response:
        return JSONResponse({"job": public_job(self._job_action(request, self.jobs.resume))})

    async def job_remove(self, request: Request) -> Response:
        self._job_action(request, self.jobs.remove)
        return JSONResponse({"ok": True})

    def _job_action(self, request: Request, action: Callable[[str], Any]) -> Any:
        jid = request.path_params["jid"]
        self.job_or_404(jid)
        return action(jid)

    # ---- the live dream ----

    async def dream_socket(self, ws: WebSocket) -> None:
        """One viewer's dream: its own DreamStream thread; a sender task writes what the stream has ready, this
        task reads the viewer's controls. Only the sender writes to the socket. Past the viewer limit it says so
        and closes ("try again later")."""
        await ws.accept()
        if self.viewers >= self.limits.max_viewers:
            await ws.send_text(json.dumps({"type": "full", "message": f"the studio is full: {self.viewers} viewers "
                                                                      f"are watching; it will retry"}))
            await ws.close(code=1013)
            return
        self.viewers += 1
        try:
            await self.dream_for(ws)
        finally:
            self.viewers -= 1

    async def dream_for(self, ws: WebSocket) -> None:
        loop, wake = asyncio.get_running_loop(), asyncio.Event()

        def notify() -> None:  # from the stream's thread; a no-op once the loop is gone (the client left)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

        stream = DreamStream(self.pool, self.registry.resolve, notify, describe_run=self.describe_run,
                             writer_factory=self.writer_factory)
        stream.start()
        sender = asyncio.create_task(send_stream(ws, stream, wake))
        try:
            await receive_controls(ws, stream, sender)
        finally:
            stream.stop(timeout=0)  # first, synchronously: the task may be cancelled at the next await
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            with contextlib.suppress(BaseException):
                await run_in_threadpool(stream.stop)


async def send_stream(ws: WebSocket, stream: DreamStream, wake: asyncio.Event) -> None:
    """Events first, then the newest frame, each time the stream has something."""
    while True:
        await wake.wait()
        wake.clear()
        for event in stream.take_events():
            await ws.send_text(json.dumps(event))
        frame = stream.take_frame()
        if frame is not None:
            await ws.send_bytes(frame)


async def receive_controls(ws: WebSocket, stream: DreamStream, sender: asyncio.Task) -> None:
    """Apply the viewer's control messages until it leaves (or the sender fails)."""
    with contextlib.suppress(WebSocketDisconnect):
        while not sender.done():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            error = apply_control(stream, message.get("text"))
            if error is not None:
                stream.tell({"type": "error", "message": error})


def apply_control(stream: DreamStream, text: str | None) -> str | None:
    """Apply one WebSocket message; the one-line answer when it cannot be (never an exception)."""
    if text is None:
        return "controls must be JSON text, not binary"
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):   # RecursionError: JSON nested deeper than Python's stack
        return "controls must be JSON"
    try:
        stream.apply(message)
    except DreamvidError as exc:
        return str(exc)
    except Exception as exc:  # a bug, not the viewer's doing
        return crash_line(exc)
    return None


def crash_line(exc: Exception) -> str:
    """For a bug: the trace to the terminal, and the one line the page gets."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return f"internal error ({type(exc).__name__}); the server's terminal has the details"


def public_job(job: dict) -> dict:
    """A job as the page sees it: its settings and state, its run folder's progress and newest preview."""
    out = Path(job["out"])
    public = {k: job.get(k) for k in ("id", "name", "source", "preset", "size", "minutes", "state", "created",
                                      "started", "finished", "error", "returncode")}
    started = job.get("state") != "queued"
    public["progress"] = RunDir(out).read_progress() if started else None
    preview = latest_preview(out, prefer="reconstruction") if started else None
    public["preview"] = f"/api/jobs/{job['id']}/preview?t={int(preview.stat().st_mtime)}" if preview else None
    public["run"] = run_id(out) if RunDir(out).is_run() else None
    return public


def _png(path: Path | None, missing: str) -> Response:
    if path is None:
        raise HTTPException(404, missing)
    return FileResponse(path, media_type="image/png")


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def on_dreamvid_error(request: Request, exc: DreamvidError) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def on_crash(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": crash_line(exc)}, status_code=500)


def create_app(run_dirs: list[Path] | None = None, runs_dir: Path | None = None, **options) -> Starlette:
    """The studio as a Starlette app (tests drive it directly; `serve` runs it under uvicorn). Options are
    `Studio`'s: data_dir, host, limits, loader, train_command, start_jobs, writer_factory."""
    return Studio(run_dirs, runs_dir, **options).app()


def serve(run_dirs: list[Path], runs_dir: Path | None = None, host: str = "127.0.0.1", port: int = 7860,
          data_dir: Path | None = None, limits: Limits = Limits()) -> None:
    """Run the studio until Ctrl-C. Raises UsageError for a folder that is not a run, a port in use, or a
    non-loopback bind without the host names to accept; DreamvidError when another studio uses the data folder."""
    import uvicorn

    _check_arguments(run_dirs, runs_dir, port)
    _require_websocket_library()
    _check_port_free(host, port)
    if not is_loopback(host):
        if not limits.allowed_hosts:
            raise UsageError(f"--host {host} answers other machines, so the studio needs the names they use for it",
                             "add --allowed-host NAME (the host name or address in the browser's address bar)")
        print(f"warning: the studio is bound to {host}, so anyone who can reach this machine on port {port} can "
              f"watch, upload videos and start training. It has no login. Bind 127.0.0.1 (the default) unless "
              f"that is what you want.", file=sys.stderr)
    _tune_threads()
    data_dir = (Path(data_dir) if data_dir is not None else default_data_dir()).expanduser().resolve()
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(data_folder_lock(data_dir))
            studio = Studio(run_dirs, runs_dir, data_dir=data_dir, host=host, limits=limits)
        except OSError as exc:
            raise DreamvidError(f"cannot use the studio's data folder ({exc})", "pass a writable data folder") from None
        shown = f"[{host}]" if ":" in host else host
        print(f"dreamvid studio on http://{shown}:{port}/  (data: {studio.data_dir}, new runs: {studio.runs_root}; "
              f"Ctrl-C stops)", file=sys.stderr, flush=True)
        uvicorn.run(studio.app(), host=host.strip("[]"), port=port, log_level="warning", ws_max_size=1 << 20,
                    timeout_graceful_shutdown=5)


def _check_arguments(run_dirs: list[Path], runs_dir: Path | None, port: int) -> None:
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise UsageError(f"{run_dir} does not exist or is not a folder", "pass a RUN_DIR made by `dreamvid train`")
        if not RunDir(run_dir).is_run():
            raise UsageError(f"{run_dir} is not a run (no config.json)", "pass a RUN_DIR made by `dreamvid train`")
    if runs_dir is not None and Path(runs_dir).exists() and not Path(runs_dir).is_dir():
        raise UsageError(f"--runs-dir {runs_dir} is not a folder")
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port", "use a number from 1 to 65535")


def _require_websocket_library() -> None:
    """uvicorn serves WebSockets only through `websockets` or `wsproto`; without either the page would stay
    black, retrying, while plain HTTP works. Both are optional for uvicorn, so say so before starting."""
    if not any(importlib.util.find_spec(name) for name in ("websockets", "wsproto")):
        raise DreamvidError("the studio needs a WebSocket library for its live dream, and none is installed",
                            "install it: pip install websockets")


def _check_port_free(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe_socket:
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind((host.strip("[]"), port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                             "pass --port with a free port, or stop the program using it") from None


def _tune_threads() -> None:
    """One torch thread per op: every client has its own generator thread, and on a few cores intra-op
    threads would only fight over them."""
    with contextlib.suppress(Exception):  # torch missing or already running parallel work
        import torch

        torch.set_num_threads(1)
