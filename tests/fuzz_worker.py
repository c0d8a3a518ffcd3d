"""Runs `dreamvid train` in this one process on each video listed in a file, as the fuzz test asks: a fresh
interpreter (so a crash in FFmpeg is the test's failure, not pytest's) that records, per case, the exit code, the
seconds it took, whether stderr held a traceback, and this process's peak memory at the end.

    python tests/fuzz_worker.py CASES_TXT RESULTS_JSONL WORK_DIR
"""
from __future__ import annotations

import contextlib
import io
import json
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

SECONDS_PER_CASE = 20


class TookTooLong(Exception):
    pass


def _alarm(signum, frame):
    raise TookTooLong()


def run_case(video: str, work: Path) -> dict:
    from dreamvid.cli import main
    err = io.StringIO()
    started = time.monotonic()
    signal.alarm(SECONDS_PER_CASE)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["train", video, "-o", str(work), "--preset", "tiny", "--vae-epochs", "0",
                         "--rnn-epochs", "0", "--quiet", "--force"])
    except TookTooLong:
        code = "timeout"
    except BaseException:  # what the user would have seen as a traceback
        code, _ = "raised", traceback.print_exc(file=err)
    finally:
        signal.alarm(0)
    text = err.getvalue()
    return {"video": video, "code": code, "seconds": round(time.monotonic() - started, 2),
            "traceback": "Traceback" in text, "error_lines": len(_errors(text)),
            "stderr": text.strip()[-300:]}


def _errors(stderr: str) -> list[str]:
    """The lines of `stderr` that are not warnings (a damaged file's warning comes before its one-line error)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("dreamvid: warning:")]


def main(cases: str, results: str, work: str) -> None:
    import warnings
    warnings.simplefilter("ignore")  # a truncated file's warning is not a traceback
    signal.signal(signal.SIGALRM, _alarm)
    with open(results, "w") as out:
        for index, video in enumerate(Path(cases).read_text().splitlines()):
            out.write(json.dumps(run_case(video, Path(work) / f"run{index}")) + "\n")
            out.flush()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.write(json.dumps({"peak_rss_mb": round(peak_mb)}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
