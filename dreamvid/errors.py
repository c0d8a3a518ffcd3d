"""Errors a user can act on. The CLI prints them as one line and exits with `exit_code`.

Exit codes scripts can rely on:
  2  usage error: the command was asked for something impossible or unsafe (a path that does not exist,
     a directory where a video is expected, a RUN_DIR that is not a run, temperature <= 0, negative
     frames, an existing output without --force).
  1  failure: the input or the environment let us down (a file that is not a video, audio only, too few
     frames, a damaged or incompatible checkpoint, an unwritable output).
"""
from __future__ import annotations


class DreamvidError(Exception):
    """A failure with a message that names the problem and, where there is one, the fix."""

    exit_code = 1
    quiet = False   # told by another process: a data-parallel job's errors are printed by process 0 alone

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}; {fix}")


class UsageError(DreamvidError):
    exit_code = 2


class Interrupted(DreamvidError):
    """Training stopped by Ctrl-C (or a stop request) after saving a resumable checkpoint."""

    exit_code = 130
