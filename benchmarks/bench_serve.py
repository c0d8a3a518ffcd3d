"""Benchmark the studio's live dream: frame rate to concurrent clients, control latency, server memory.

    python benchmarks/bench_serve.py [--run RUN_DIR] [--clients 4] [--fps 30] [--minutes 10]

Starts `dreamvid serve` in a subprocess (so its memory is measured alone), connects N WebSocket clients that
each ask for --fps frames per second, and reports:
  - frames per second each client received (over the whole run, and the worst 5-second window),
  - control latency: time from sending a temperature change to receiving the first frame generated after it
    (the frame header carries the control's version), on client 0, every 2 seconds,
  - server RSS sampled every 10 s: its range after a 30 s warm-up.
Without --run it trains a run first (preset default, 64 px, 0.5 minutes, on a synthetic clip).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = struct.Struct("<III")


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu}, {cores} cores usable, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{platform.system()} {platform.release()}, load average at start {load}")


def train_run(base: Path, preset: str, size: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic import make_video

    clip = make_video(base / "clip.mp4", n_frames=240, width=96, height=96, fps=24)
    run = base / "run"
    subprocess.run([sys.executable, "-m", "dreamvid", "train", str(clip), "-o", str(run), "--preset", preset,
                    "--size", str(size), "--minutes", "0.5", "--quiet"], check=True, cwd=ROOT)
    return run


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def client(url: str, run_id: str, fps: float, seconds: float, index: int, results: dict,
                 latencies: list | None) -> None:
    import websockets

    async with websockets.connect(url, origin=None, max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "start", "run": run_id, "fps": fps, "v": 1}))
        arrivals: list[float] = []
        version = 1
        pending: tuple[int, float] | None = None
        temperature = 1.0
        next_change = time.monotonic() + 3.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            now = time.monotonic()
            if isinstance(message, str):
                continue
            arrivals.append(now)
            _, frame_version, _ = HEADER.unpack_from(message)
            if pending is not None and frame_version >= pending[0]:
                latencies.append((now - pending[1]) * 1000)
                pending = None
            if latencies is not None and pending is None and now >= next_change:
                version += 1
                temperature = 1.5 if temperature == 1.0 else 1.0
                pending = (version, time.monotonic())
                await ws.send(json.dumps({"type": "set", "temperature": temperature, "v": version}))
                next_change = now + 2.0
        results[index] = arrivals


def summarise(arrivals: list[float], warmup: float) -> tuple[float, float]:
    if len(arrivals) < 2:
        return 0.0, 0.0
    start = arrivals[0] + warmup
    kept = [t for t in arrivals if t >= start]
    span = kept[-1] - kept[0] if len(kept) > 1 else 1.0
    mean = (len(kept) - 1) / span if span > 0 else 0.0
    worst = float("inf")
    t = kept[0]
    while t + 5 <= kept[-1]:
        worst = min(worst, sum(1 for a in kept if t <= a < t + 5) / 5)
        t += 5
    return mean, (worst if worst != float("inf") else mean)


async def run_clients(url: str, run_id: str, args, server_pid: int) -> None:
    results: dict[int, list[float]] = {}
    latencies: list[float] = []
    seconds = args.minutes * 60
    rss: list[tuple[float, float]] = []

    async def sample_rss():
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            rss.append((time.monotonic() - t0, rss_mb(server_pid)))
            await asyncio.sleep(10 if seconds > 60 else 2)

    tasks = [client(url, run_id, args.fps, seconds, i, results, latencies if i == 0 else None)
             for i in range(args.clients)]
    await asyncio.gather(sample_rss(), *tasks)
    print(f"\nclients: {args.clients}, each asking for {args.fps:g} fps, for {seconds:.0f} s")
    for i in range(args.clients):
        mean, worst = summarise(results.get(i, []), warmup=3.0)
        print(f"  client {i}: {mean:5.1f} fps received (worst 5 s window {worst:5.1f} fps), "
              f"{len(results.get(i, []))} frames")
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(f"control -> first frame generated after it: median {statistics.median(ordered):.0f} ms, "
              f"p95 {p95:.0f} ms, max {ordered[-1]:.0f} ms over {len(ordered)} changes")
    after = [m for t, m in rss if t >= 30] or [m for _, m in rss]
    if after:
        print(f"server RSS: {rss[0][1]:.0f} MB at start, after 30 s warm-up min {min(after):.0f} MB, "
              f"max {max(after):.0f} MB, last {after[-1]:.0f} MB (range {max(after) - min(after):.1f} MB, "
              f"{len(rss)} samples)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="trained run to dream (default: train one)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to stream (RSS is tracked throughout)")
    args = parser.parse_args()
    print("machine:", machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = args.run or train_run(tmp, args.preset, args.size)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        code = (f"from dreamvid.serve import serve; serve([{str(run)!r}], data_dir={str(tmp / 'data')!r}, "
                f"port={port})")
        server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        try:
            import httpx

            deadline = time.monotonic() + 60
            while True:
                try:
                    runs = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=2).json()["runs"]
                    break
                except (httpx.HTTPError, OSError):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start")
                    time.sleep(0.2)
            run_id = runs[0]["id"]
            print(f"run: {run} ({runs[0]['preset']}, {runs[0]['size']} px)")
            asyncio.run(run_clients(f"ws://127.0.0.1:{port}/ws/dream", run_id, args, server.pid))
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
