"""report.html renders in headless Debian chromium: every image loads, no console errors, no network.

Chromium missing is a failure, not a skip: `make test` installs it (apt-get install chromium)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dreamvid import evaluation as E
from synthetic import moving_shapes

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    frames = moving_shapes(160, 64, 64, seed=5)
    train, held = frames[:144], frames[144:]
    rng = np.random.default_rng(0)
    # A "dream": the source with noise and a few frozen stretches, so the report has flags to show.
    dream = np.clip(np.concatenate([train, np.repeat(train[10:11], 30, 0), train[::-1]]).astype(np.int16)
                    + rng.integers(-12, 13, (2 * len(train) + 30, 64, 64, 3)), 0, 255).astype(np.uint8)
    out = tmp_path_factory.mktemp("browser")
    report = E.report_from_frames(dream, train, held, 24, out=out / "eval", seed=0,
                                  diversity_dreams=[train[:20], train[30:50], train[70:90]],
                                  model={"reconstruction": {"psnr": 24.5, "ssim": 0.81, "frames": 16},
                                         "prediction": {"context": 16,
                                                        "teacher_forced": {"nll": -3.0, "mse": 0.1, "psnr": 22.0},
                                                        "open_loop": {"1": {"nll": -3.0, "mse": 0.1, "psnr": 22.0},
                                                                      "8": {"nll": 1.0, "mse": 0.3, "psnr": 19.0},
                                                                      "32": None}}},
                                  meta={"run_dir": "runs/browser"})
    assert report["flags"], "the test dream should trip some flags"
    E.compare([out / "eval"], html=out / "compare.html")
    return out / "eval" / "report.html", out / "compare.html"


def _render(path: Path) -> tuple[list[str], list[int], list[str], str]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists() or shutil.which("chromium"), \
        "chromium is not installed: apt-get install -y chromium (make test does this)"
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
            text = page.inner_text("body")
        finally:
            browser.close()
    return errors, widths, requests, text


def test_report_renders_in_chromium(pages):
    report, _ = pages
    errors, widths, requests, text = _render(report)
    assert errors == []
    assert len(widths) >= 12 and all(w > 0 for w in widths), widths
    # Nothing but the page itself and its inline data: URIs is fetched.
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert "off their reference range" in text and "replay" in text and "reconstruction" in text.lower()


def test_compare_page_renders_in_chromium(pages):
    _, compare = pages
    errors, widths, requests, text = _render(compare)
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert "realism" in text
