"""Exported dreams: ONNX Runtime against torch on the CPU, and the self-contained page in headless Chromium.

    python benchmarks/bench_export.py backends                 # step + decode frames/s, torch and ONNX Runtime
    python benchmarks/bench_export.py page demo/run            # the page's size, first frame and frames/s

`backends` runs each shipped preset's freshly initialised models (speed does not depend on what they learned)
through both backends in one process, no video encoding. `page` exports RUN to a page, opens it from file://
with the network off in Debian's Chromium (WebAssembly on one thread: a file:// page cannot have more), asks it
for 60 frames/s and reads the page's own frame counter once a second.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_dream import make_untrained_run
from common import machine
from dreamvid.dreaming import load
from dreamvid.export import export

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def dream_rate(dreamer, frames: int, batch: int = 16) -> tuple[float, float, float]:
    """Frames/s of stepping alone, decoding alone, and both, for `frames` frames of one dream."""
    session = dreamer.session(seed=0)
    started = time.perf_counter()
    latents = torch.cat([session.next_latents(batch) for _ in range(frames // batch)])
    stepped = time.perf_counter()
    for start in range(0, len(latents), batch):
        dreamer.decode(latents[start:start + batch])
    decoded = time.perf_counter()
    step, decode = stepped - started, decoded - stepped
    return frames / step, frames / decode, frames / (step + decode)


def backends(frames: int) -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("default", "worldmodels", "classic"):
            (Path(tmp) / preset).mkdir()
            run = make_untrained_run(Path(tmp) / preset, preset, 128 if preset == "classic" else 64)
            rows, traced = {}, []
            for backend in ("torch", "onnx", "torch", "onnx"):   # each twice, alternating; the faster run counts
                dreamer = load(run, device="cpu", backend=backend)
                started = time.perf_counter()
                if dreamer.onnx is not None:   # traced on first use: timed apart from dreaming
                    traced.append(time.perf_counter() - started)
                rate = dream_rate(dreamer, frames)
                rows[backend] = max(rows.get(backend, rate), rate, key=lambda r: r[2])
            print(f"{preset:12s} " + " | ".join(f"{backend}: step {r[0]:.0f}, decode {r[1]:.0f}, both {r[2]:.0f} frames/s"
                                                for backend, r in rows.items())
                  + f" | onnx graphs traced in {min(traced):.1f} s")


def page(run: Path, seconds: int) -> None:
    from playwright.sync_api import sync_playwright
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "dream.html"
        export(run, html=html)
        print(f"page: {html.stat().st_size / 2 ** 20:.1f} MB for {run}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            context = browser.new_context(offline=True)
            requests = []
            context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()
                                                 if route.request.url == html.as_uri() else route.abort()))
            view = context.new_page()
            view.goto(html.as_uri())
            while not view.evaluate("() => window.dreamvid.frames > 0 || window.dreamvid.error !== null"):
                view.wait_for_timeout(20)
            view.locator("#speed").fill("60")
            rates = []
            for _ in range(seconds):
                view.wait_for_timeout(1000)
                rates.append(view.evaluate("() => window.dreamvid.fps"))
            facts = view.evaluate("() => window.dreamvid")
            browser.close()
    print(f"first frame after {facts['firstFrameMs']} ms (from navigation start); asked for 60 frames/s: median "
          f"{statistics.median(rates[2:])} frames/s by the page's counter over {seconds - 2} s "
          f"(min {min(rates[2:])}); {facts['frames']} frames; requests: {len(requests) - 1} beyond the page")


def main() -> None:
    parser = argparse.ArgumentParser()
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("backends").add_argument("--frames", type=int, default=1024)
    page_parser = verbs.add_parser("page")
    page_parser.add_argument("run", type=Path)
    page_parser.add_argument("--seconds", type=int, default=12)
    args = parser.parse_args()
    backends(args.frames) if args.verb == "backends" else page(args.run, args.seconds)


if __name__ == "__main__":
    main()
