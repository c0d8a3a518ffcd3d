"""The live dream's controls: what a viewer may send up the WebSocket, as one table from a message's "type" to
the small handler that reads it.

A handler only reads and checks: it returns the changes a message asks for, each value within its range, and
nothing changes until the whole message has passed. A malformed or out-of-range message raises `UsageError`
with one line naming the field and its range; the socket answers that viewer with it and the stream goes on.

    {"type": "start",  "run": ID, "temperature": T, "speed": S, "fps": F, "paused": B, "reproject": B,
                       "seed": N, "frame_index": N}          open a run (every field but "run" optional)
    {"type": "run",    "run": ID}                          switch runs, keeping the settings
    {"type": "set",    "temperature"|"speed"|"fps"|"reproject": value, ...}
    {"type": "pause",  "paused": B}                        without "paused": toggle
    {"type": "reseed", "seed": N, "frame_index": N}        either may be null: random
    {"type": "record", "seconds": S}                       record the next S seconds (default 10)

Every message may carry "v", the page's version number for it; frames generated after it carry it back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UsageError

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 5.0
MIN_SPEED, MAX_SPEED = 0.05, 16.0
MIN_FPS, MAX_FPS = 0.5, 120.0
MAX_RECORD_SECONDS = 120.0
MAX_UINT32 = 2 ** 32 - 1  # seeds, source frame numbers and versions (frames carry the version in a uint32)
COMMON_FIELDS = ("type", "v")


@dataclass
class Controls:
    """One viewer's settings, as the generator thread reads them. `reseed` and `record` are one-shot requests
    that the thread takes (and clears) when it acts on them."""

    run: str | None = None
    temperature: float | None = None  # None: the run's own default, filled in when it loads
    speed: float = 1.0
    fps: float | None = None          # explicit frame rate; overrides speed when set
    paused: bool = False
    reproject: bool = False           # each latent back through the VAE (Dreamer.session)
    reseed: dict | None = None
    record: float | None = None
    version: int = 0

    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, max(self.version, value) if name == "version" else value)


# ---- values ----

def number(name: str, value: Any, low: float, high: float) -> float:
    """A finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise UsageError(f"{name} must be a finite number")
    if not low <= out <= high:
        raise UsageError(f"{name} must be between {low:g} and {high:g}, got {out:g}")
    return out


def whole(name: str, value: Any, low: int, high: int) -> int:
    """A whole number in [low, high] (a float such as 3.0 counts; 3.5, true and "3" do not)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise UsageError(f"{name} must be a whole number from {low} to {high}, got {value}")
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, got {value!r}")
    return value


def _optional_whole(name: str, value: Any) -> int | None:
    return None if value is None or value == "" else whole(name, value, 0, MAX_UINT32)


# What "set" (and "start") may change, in the order they are applied: a speed drops an explicit fps, and an fps
# given with it wins.
SETTINGS: dict[str, Callable[[Any], dict]] = {
    "temperature": lambda v: {"temperature": number("temperature", v, MIN_TEMPERATURE, MAX_TEMPERATURE)},
    "speed": lambda v: {"speed": number("speed", v, MIN_SPEED, MAX_SPEED), "fps": None},
    "fps": lambda v: {"fps": number("fps", v, MIN_FPS, MAX_FPS)},
    "reproject": lambda v: {"reproject": flag("reproject", v)},
}


# ---- handlers: (message, current controls, resolve_run) -> changes ----

def _run(message: dict, current: Controls, resolve_run: Callable[[str], Any]) -> dict:
    run = message.get("run")
    if run is None:
        raise UsageError("run needs the id of a run", "pick one from the list of runs")
    if not isinstance(run, str):
        raise UsageError(f"run must be a run id, got {run!r}", "pick one from the list of runs")
    resolve_run(run)  # an unknown id fails here, in the page's terms
    return {"run": run}


def _set(message: dict, current: Controls, resolve_run) -> dict:
    given = [name for name in SETTINGS if name in message]
    if not given:
        raise UsageError("set needs a setting", f"send one of {', '.join(SETTINGS)}")
    changes: dict = {}
    for name in given:
        changes.update(SETTINGS[name](message[name]))
    return changes


def _restart_point(message: dict) -> dict:
    return {"seed": _optional_whole("seed", message.get("seed")),
            "frame_index": _optional_whole("frame_index", message.get("frame_index"))}


def _start(message: dict, current: Controls, resolve_run) -> dict:
    """A run with its settings; a setting left out (or null) keeps its value, pause and re-projection go off."""
    changes = {"paused": False, "reproject": False}
    for name, read in SETTINGS.items():
        if message.get(name) is not None:
            changes.update(read(message[name]))
    if message.get("paused") is not None:
        changes["paused"] = flag("paused", message["paused"])
    if message.get("seed") is not None or message.get("frame_index") is not None:
        changes["reseed"] = _restart_point(message)
    if message.get("run") is not None:  # without one, the current run goes on
        changes.update(_run(message, current, resolve_run))
    return changes


def _pause(message: dict, current: Controls, resolve_run) -> dict:
    paused = message.get("paused")
    return {"paused": not current.paused if paused is None else flag("paused", paused)}


def _reseed(message: dict, current: Controls, resolve_run) -> dict:
    return {"reseed": _restart_point(message)}


def _record(message: dict, current: Controls, resolve_run) -> dict:
    seconds = number("seconds", message.get("seconds", 10), 0, MAX_RECORD_SECONDS)
    if seconds == 0:
        raise UsageError(f"seconds must be more than 0 and at most {MAX_RECORD_SECONDS:g}")
    return {"record": seconds}


@dataclass(frozen=True)
class Control:
    fields: tuple[str, ...]
    read: Callable[[dict, Controls, Callable[[str], Any]], dict]


CONTROLS: dict[str, Control] = {
    "start": Control(("run", *SETTINGS, "paused", "seed", "frame_index"), _start),
    "run": Control(("run",), _run),
    "set": Control(tuple(SETTINGS), _set),
    "pause": Control(("paused",), _pause),
    "reseed": Control(("seed", "frame_index"), _reseed),
    "record": Control(("seconds",), _record),
}


def read_control(message: Any, current: Controls, resolve_run: Callable[[str], Any]) -> dict:
    """The changes a control message asks for, every value checked. Raises UsageError (one line) for a message
    that is not an object, has an unknown type or field, or a value out of its range."""
    if not isinstance(message, dict):
        raise UsageError("a control message must be a JSON object")
    kind = message.get("type")
    control = CONTROLS.get(kind) if isinstance(kind, str) else None
    if control is None:
        raise UsageError(f"unknown control {kind!r}", f"send one of {', '.join(CONTROLS)}")
    unknown = sorted(set(message) - set(control.fields) - set(COMMON_FIELDS))
    if unknown:
        raise UsageError(f"{kind} takes no {', '.join(map(repr, unknown))}",
                         f"it takes {', '.join(control.fields)}")
    changes = control.read(message, current, resolve_run)
    if message.get("v") is not None:
        changes["version"] = whole("v", message["v"], 0, MAX_UINT32)
    return changes
