"""The exported page in a real browser: Debian's Chromium opens it from file:// with the network off.

It must dream with no console error, change its canvas as it runs, dream differently at another temperature and
the same at the same one, and never make a request: the page carries everything it runs.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from dreamvid.cli import main
from test_serve_browser import CHROMIUM, CHROMIUM_ARGS

READ_CANVAS = """() => {
  const c = document.getElementById('screen');
  return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
}"""


@pytest.fixture(scope="module")
def exported_page(cli_run, tmp_path_factory) -> Path:
    page = tmp_path_factory.mktemp("export") / "dream.html"
    assert main(["export", str(cli_run.path), "--html", str(page)]) == 0
    return page


@pytest.fixture
def page(exported_page):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(offline=True)
        requests, problems = [], []

        def route(request_route):
            requests.append(request_route.request.url)
            if request_route.request.url == exported_page.as_uri():
                request_route.continue_()
            else:
                request_route.abort()

        context.route("**/*", route)
        pg = context.new_page()
        pg.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.requests, pg.problems = requests, problems
        pg.goto(exported_page.as_uri())
        yield pg
        browser.close()


def wait_for(page, condition: str, seconds: float = 20) -> None:
    """Poll `condition` (a function's source) in the page: the page's content security policy forbids the eval
    that Playwright's own wait_for_function needs."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {condition}; problems: {page.problems}"
        page.wait_for_timeout(50)


def step_frames(page, seed: int, temperature: float, frames: int = 4) -> list[int]:
    """The canvas after `frames` frames from `seed`, dreamed one at a time with the page paused."""
    page.fill("#seed", str(seed))
    page.click("#restart")
    page.locator("#temperature").fill(str(temperature))
    for _ in range(frames):
        before = page.evaluate("() => window.dreamvid.frames")
        page.click("#step")
        wait_for(page, f"() => window.dreamvid.frames > {before}")
    return page.evaluate(READ_CANVAS)


def test_page_dreams_offline_from_the_file_and_asks_for_nothing(page):
    wait_for(page, "() => window.dreamvid.frames > 3 || window.dreamvid.error !== null")
    assert page.evaluate("() => window.dreamvid.error") is None, page.problems
    first = page.evaluate(READ_CANVAS)
    page.wait_for_timeout(600)
    assert page.evaluate(READ_CANVAS) != first              # the dream moves
    assert page.evaluate("() => window.dreamvid.firstFrameMs") < 10_000
    assert page.text_content("#facts").count("tiny") == 1  # the preset it was made from
    assert page.problems == []
    assert page.requests == [page.url]                        # the page itself, and nothing after


def test_temperature_changes_the_stream_and_a_seed_replays_it(page):
    wait_for(page, "() => window.dreamvid.frames > 0")
    page.click("#pause")
    wait_for(page, "() => !document.getElementById('step').disabled")
    page.wait_for_timeout(200)   # a frame begun before the pause finishes
    cool = step_frames(page, seed=5, temperature=0.05)
    assert step_frames(page, seed=5, temperature=0.05) == cool   # the same seed and temperature: the same frames
    assert step_frames(page, seed=5, temperature=2.0) != cool    # another temperature: another dream
    with page.expect_download() as download:
        page.click("#save")
    saved = Path(download.value.path()).read_bytes()
    assert saved.startswith(b"\x89PNG") and download.value.suggested_filename.endswith(".png")
    assert page.problems == [] and page.requests == [page.url]
