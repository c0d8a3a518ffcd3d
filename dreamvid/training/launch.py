"""`dreamvid train --nproc N`: N data-parallel training processes on this machine, started by torchrun's own
engine (torch.distributed's elastic agent) in this process, each running `train` as its part of the job
(`python -m dreamvid.training.launch`, as torchrun would start it).

The agent watches the processes: when one fails or dies, it stops the others at once, and the run folder keeps
its last checkpoint (process 0 writes every file atomically). Ctrl-C reaches every process; they stop at the same
step, process 0 saves once, and this process prints the resume command. A process's error comes back here
through a file, so it is told once, in one line.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import tempfile
import traceback
import uuid
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import DreamvidError, Interrupted, UsageError

ERRORS = {cls.__name__: cls for cls in (DreamvidError, UsageError, Interrupted)}
PEER_LOST = 75   # the exit code of a process that stopped because another died: never the one to name


def launch(nproc: int, port: int | None, settings: dict) -> "Run":
    """Train with `settings` (train's arguments) in `nproc` processes meeting on local `port`; the finished run."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    from .job import Run
    _check_launch(nproc, settings["device"])
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port(port)}", max_restarts=0,
                          monitor_interval=0.1)
    _silence_agent()
    out = Path(settings["out"])
    with tempfile.TemporaryDirectory(prefix="dreamvid-ranks-") as errors:
        task = json.dumps({"settings": _portable(settings), "errors": errors})
        try:
            elastic_launch(config, sys.executable)("-m", __name__, task)
        except SignalException as exc:
            raise Interrupted(f"training interrupted ({signal.Signals(exc.sigval).name}); progress saved in {out}",
                              f"resume with: dreamvid train -o {out} --resume") from None
        except ChildFailedError as exc:
            raise _told_error(Path(errors)) or _death(exc, nproc, out) from None
    from ..rundir import RunDir
    return Run(out, RunDir(out).read_config())


def _check_launch(nproc: int, device: str) -> None:
    if nproc == 1:
        raise UsageError("--port is where --nproc processes meet", "pass --nproc 2 or more, or drop --port")
    if "RANK" in os.environ:
        raise UsageError("--nproc starts its own processes, and this one is already part of a torchrun job",
                         "give torchrun --nproc-per-node instead")
    if device in ("cuda", "auto") and torch.cuda.is_available():
        most, what = torch.cuda.device_count(), "CUDA GPUs"
    else:
        most, what = os.cpu_count() or 1, "CPU cores"
    if nproc > most:
        raise UsageError(f"--nproc {nproc} is more processes than this machine's {most} {what}",
                         f"pass --nproc {most} or fewer")


def _free_port(port: int | None) -> int:
    """`port` if nothing listens on it (a free one if None)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port or 0))
        except OSError as exc:
            raise UsageError(f"port {port} is taken ({(exc.strerror or str(exc)).lower()})",
                             "pass another --port, or leave it out to use a free one") from None
        return probe.getsockname()[1]


def _silence_agent() -> None:
    """The agent logs every start and stop; what matters is told as dreamvid's own line."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _portable(settings: dict) -> dict:
    """train's arguments as JSON: paths as text, a RunConfig preset as its dict."""
    from .job import source_list
    preset = settings["preset"]
    return {**settings, "sources": [str(s) for s in source_list(settings["sources"])], "out": str(settings["out"]),
            "preset": asdict(preset) if isinstance(preset, RunConfig) else preset}


def _told_error(errors: Path) -> DreamvidError | None:
    """The error a process wrote (process 0's first): what stopped the job."""
    for path in sorted(errors.glob("rank*.json"), key=lambda p: int(p.stem[4:])):
        told = json.loads(path.read_text())
        return ERRORS.get(told["kind"], DreamvidError)(told["problem"], told["fix"])
    return None


def _death(exc, nproc: int, out: Path) -> DreamvidError:
    """The one line for a process that died without telling why: the first to fail, not one that stopped after it
    (a survivor can exit before the agent sees the death that stopped it)."""
    failures = sorted(exc.failures.items(), key=lambda item: item[1].timestamp)
    rank, failure = next(((r, f) for r, f in failures if f.exitcode != PEER_LOST), failures[0])
    why = f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return DreamvidError(f"training process {rank} of {nproc} stopped ({why}), and the others with it; the run "
                         "keeps its last checkpoint", f"resume with: dreamvid train -o {out} --resume")


def _process(task: dict) -> int:
    """One process of the job; an error it tells (not one it echoes from process 0) goes to the errors folder."""
    from .job import train
    from .parallel import PeerLost
    settings = task["settings"]
    if isinstance(settings["preset"], dict):
        settings["preset"] = RunConfig.from_dict(settings["preset"])
    rank = os.environ.get("RANK", "0")
    try:
        train(**{**settings, "progress": settings["progress"] and rank == "0"})
    except DreamvidError as exc:
        if isinstance(exc, PeerLost):   # the launcher names the process that died
            return PEER_LOST
        if not exc.quiet:
            _tell(task, rank, type(exc).__name__, exc.problem, exc.fix)
        return exc.exit_code
    except Exception as exc:  # a bug: its traceback on stderr, and one line from the launcher
        traceback.print_exc()
        _tell(task, rank, "DreamvidError", f"training process {rank} failed: {type(exc).__name__}: {exc}",
              "please report this with the traceback above")
        return 1
    return 0


def _tell(task: dict, rank: str, kind: str, problem: str, fix: str | None) -> None:
    path = Path(task["errors"]) / f"rank{rank}.json"
    path.write_text(json.dumps({"kind": kind, "problem": problem, "fix": fix}))


if __name__ == "__main__":
    code = _process(json.loads(sys.argv[1]))
    if code:   # skip C++ teardown, which can abort noisily ("terminate called ...") when a peer died mid-step
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
