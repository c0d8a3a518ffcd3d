"""Training jobs for the studio: one `dreamvid train` subprocess at a time, the rest queued, all persisted.

The job list lives in DATA_DIR/jobs.json (rewritten atomically), so a page reload or a server restart shows the
same queue. Training runs as a child process -- `python -m dreamvid train SOURCE -o RUN_DIR ...` -- at a lower
CPU priority, so it never blocks the streams and a crash in it cannot take the server down. Cancel sends SIGINT
(training saves and exits with 130), then SIGTERM, then SIGKILL if it still has not gone.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..files import atomic_write_json, read_json
from ..rundir import RunDir

ACTIVE = ("queued", "running", "cancelling")
FINAL = ("done", "failed", "cancelled", "interrupted")
INTERRUPTED = "the server stopped while this job was training"


def train_command(job: dict) -> list[str]:
    argv = [sys.executable, "-m", "dreamvid", "train", job["upload"], "-o", job["out"],
            "--preset", str(job["preset"]), "--size", str(job["size"]), "--minutes", str(job["minutes"]), "--quiet"]
    return argv + ["--resume"] if job.get("resume") else argv


def _pid_alive(pid: int | None, out: str) -> bool:
    """Whether `pid` is still the trainer for `out` (a server restarted while its child trained on)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return out.encode() in cmdline


class JobManager:
    """Queue and run training jobs. `submit`, `cancel`, `list`; `start()` the worker, `stop()` on shutdown."""

    TERM_S = 5.0  # after SIGTERM, how long a trainer has before SIGKILL
    NICE = 5      # how much lower the trainer's CPU priority is than the server's

    def __init__(self, data_dir: Path, command: Callable[[dict], list[str]] | None = None, grace_s: float = 20.0):
        self.data_dir = Path(data_dir)
        self.jobs_dir = self.data_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.data_dir / "jobs.json"
        self._command = command or train_command
        self._grace_s = grace_s
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._stop_requested: float | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._jobs: list[dict] = self._load()

    # ---- persistence ----

    def _load(self) -> list[dict]:
        raw = read_json(self.state_path)
        if self.state_path.exists() and (raw is None or not isinstance(raw.get("jobs"), list)):
            self._set_aside()
            raw = None
        jobs = [j for j in (raw or {}).get("jobs", []) if isinstance(j, dict) and "id" in j]
        for job in jobs:
            if job.get("state") in ("running", "cancelling"):
                if _pid_alive(job.get("pid"), job.get("out", "")):
                    job["adopted"] = True  # still training from before the restart: watch it, don't start twice
                else:
                    job.update(state="interrupted", finished=job.get("finished") or time.time(), error=INTERRUPTED)
        return jobs

    def _set_aside(self) -> None:
        """Move an unreadable jobs.json out of the way, so the next save does not overwrite what it held."""
        aside = self.state_path.with_name(f"jobs.json.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.state_path, aside)
        print(f"warning: {self.state_path} could not be read; moved it to {aside.name} and started with an "
              f"empty queue", file=sys.stderr)

    def _save(self) -> None:
        with self._lock:
            atomic_write_json(self.state_path, {"jobs": self._jobs})

    def _commit(self) -> None:
        """Save the queue and wake the worker (call with the lock held)."""
        self._save()
        self._wake.notify_all()

    # ---- API ----

    def submit(self, *, upload: Path, out: Path, source_name: str, name: str, preset: str, size: int,
               minutes: float, job_id: str | None = None) -> dict:
        job_id = job_id or new_job_id()
        job = {"id": job_id, "name": name, "source": source_name, "upload": str(upload),
               "out": str(out), "preset": preset, "size": int(size), "minutes": float(minutes),
               "state": "queued", "created": time.time(), "started": None, "finished": None,
               "error": None, "returncode": None, "pid": None,
               "log": str(self.jobs_dir / f"{job_id}.log")}
        with self._lock:
            self._jobs.append(job)
            self._commit()
        return dict(job)

    def get(self, job_id: str) -> dict:
        with self._lock:
            for job in self._jobs:
                if job["id"] == job_id:
                    return job
        raise KeyError(job_id)

    def list(self) -> list[dict]:
        with self._lock:
            return [dict(j) for j in self._jobs]

    def reserved_outputs(self, states: tuple[str, ...] = ACTIVE) -> set[str]:
        """The run folders of the jobs in `states`: by default every one a queued or running job will write."""
        with self._lock:
            return {j["out"] for j in self._jobs if j.get("state") in states}

    def active_outputs(self) -> set[str]:
        return self.reserved_outputs(("running", "cancelling"))

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            job = self.get(job_id)
            state = job["state"]
            if state == "queued":
                job.update(state="cancelled", finished=time.time())
            elif state == "running":
                job["state"] = "cancelling"
                job["cancel_requested"] = time.time()
                if job.get("adopted"):
                    _signal(job.get("pid"), signal.SIGINT)
                elif self._proc is not None:
                    _signal_proc(self._proc, signal.SIGINT)
            elif state in FINAL:
                raise UsageError(f"job {job['name']!r} has already {'finished' if state == 'done' else state}")
            self._commit()
            return dict(job)

    def resume(self, job_id: str) -> dict:
        """Queue a cancelled, interrupted or failed job again; training continues from its last checkpoint."""
        with self._lock:
            job = self.get(job_id)
            if job["state"] not in ("cancelled", "interrupted", "failed"):
                raise UsageError(f"job {job['name']!r} is {job['state']}; only a stopped job can be resumed")
            if not (Path(job["upload"]).is_file()):
                raise UsageError(f"the uploaded video of {job['name']!r} is gone", "upload it again")
            resumable = RunDir(job["out"]).is_run()  # `dreamvid train --resume` needs a run to continue
            job.update(state="queued", resume=resumable, error=None, returncode=None, finished=None,
                       started=None)
            job.pop("cancel_requested", None)
            self._commit()
            return dict(job)

    def remove(self, job_id: str) -> None:
        """Forget a finished job (its run folder stays)."""
        with self._lock:
            job = self.get(job_id)
            if job["state"] not in FINAL:
                raise UsageError("cancel the job before removing it")
            self._jobs.remove(job)
            self._save()

    # ---- worker ----

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="dreamvid-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the worker; a running trainer gets SIGINT (it saves) and is waited for, up to the grace time."""
        with self._lock:
            self._stopping = True
            self._stop_requested = time.time()
            proc = self._proc
            self._wake.notify_all()
        if proc is not None and proc.poll() is None:
            _signal_proc(proc, signal.SIGINT)
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self._grace_s + self.TERM_S + 5)

    def _next(self) -> dict | None:
        """An adopted trainer to watch first, else the oldest queued job."""
        adopted = (j for j in self._jobs if j["state"] in ("running", "cancelling") and j.get("adopted"))
        return next(adopted, None) or next((j for j in self._jobs if j["state"] == "queued"), None)

    def _work(self) -> None:
        while True:
            with self._lock:
                job = self._next()
                while job is None and not self._stopping:
                    self._wake.wait(1.0)
                    job = self._next()
                if self._stopping:
                    return
            try:
                if job.get("adopted"):
                    self._watch_adopted(job)
                else:
                    self._run(job)
            except Exception as exc:  # keep the queue alive; the page gets one line
                import traceback
                traceback.print_exc(file=sys.stderr)
                with self._lock:
                    job.update(state="failed", finished=time.time(), error=f"{type(exc).__name__}: {exc}")
                    self._save()

    def _run(self, job: dict) -> None:
        proc = self._launch(job)
        if proc is not None:
            self._supervise(job, proc)
            self._finish(job, proc.returncode)

    def _launch(self, job: dict) -> subprocess.Popen | None:
        """Start the trainer for a queued job, at a lower priority; None when the job or the server stopped."""
        with self._lock, open(job["log"], "ab") as log:
            if self._stopping or job["state"] != "queued":
                return None
            proc = subprocess.Popen(self._command(job), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            if hasattr(os, "setpriority"):
                with contextlib.suppress(OSError):  # lower priority: the live streams come first on a small machine
                    os.setpriority(os.PRIO_PROCESS, proc.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.NICE))
            self._proc = proc
            job.update(state="running", started=time.time(), pid=proc.pid)
            self._save()
        return proc

    def _supervise(self, job: dict, proc: subprocess.Popen) -> None:
        """Wait for the trainer; after a cancel or a server stop (SIGINT, sent then) escalate to SIGTERM after the
        grace time and to SIGKILL after TERM_S more."""
        sent_term = sent_kill = False
        while proc.poll() is None:
            with self._lock:
                requested = job.get("cancel_requested") or self._stop_requested
            if requested is not None:
                waited = time.time() - requested
                if waited > self._grace_s and not sent_term:
                    _signal_proc(proc, signal.SIGTERM)
                    sent_term = True
                elif waited > self._grace_s + self.TERM_S and not sent_kill:
                    proc.kill()
                    sent_kill = True
            time.sleep(0.2)

    def _finish(self, job: dict, rc: int | None) -> None:
        with self._lock:
            self._proc = None
            job.update(returncode=rc, finished=time.time(), pid=None)
            if job.get("cancel_requested") is not None:
                job["state"] = "cancelled"
            elif rc == 0:
                job["state"] = "done"
            elif self._stopping:
                job.update(state="interrupted", error=INTERRUPTED)
            else:
                job.update(state="failed", error=failure_message(job, rc))
            self._save()

    def _watch_adopted(self, job: dict) -> None:
        while _pid_alive(job.get("pid"), job["out"]):
            with self._lock:
                if self._stopping:
                    return
                requested = job.get("cancel_requested")
            if requested is not None and time.time() - requested > self._grace_s:
                _signal(job.get("pid"), signal.SIGTERM)
            time.sleep(0.5)
        progress = RunDir(job["out"]).read_progress() or {}
        with self._lock:
            job.pop("adopted", None)
            job.update(finished=time.time(), pid=None)
            if job.get("cancel_requested") is not None:
                job["state"] = "cancelled"
            elif progress.get("finished") and not progress.get("error"):
                job["state"] = "done"
            else:
                job.update(state="failed", error=progress.get("error") or "training stopped before it finished")
            self._save()


def failure_message(job: dict, rc: int | None) -> str:
    """One line for the page: the trainer's own error, never a stack trace."""
    progress = RunDir(job["out"]).read_progress() or {}
    if progress.get("error"):
        return _one_line(str(progress["error"]))
    try:
        with open(job["log"], "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    crashed = any(line.startswith("Traceback") for line in lines)
    last = lines[-1] if lines else ""
    if last and not last.startswith(("File ", "^", "~")):
        prefix = f"training crashed (exit code {rc}): " if crashed else ""
        return _one_line(prefix + last)
    return f"training failed with exit code {rc}; the log is {job['log']}"


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def new_job_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)


def _signal_proc(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        proc.send_signal(sig)


def _signal(pid: int | None, sig: int) -> None:
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
