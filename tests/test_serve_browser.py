"""The studio in a real browser: Debian's Chromium driven by Playwright (no browser download).

These fail, not skip, when /usr/bin/chromium is missing: `.ci/run` installs it (apt-get install chromium).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from synthetic import make_video
from test_serve import running_server, train_tiny_run

from dreamvid.serve.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]

# Canvas pixels, read in the page: the mean of the RGB channels and a small fingerprint of the picture.
READ_CANVAS = """() => {
  const c = document.getElementById('dream');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const px = [];
  for (let i = 0; i < d.length; i += 4) px.push(d[i], d[i + 1], d[i + 2]);
  return {pixels: px, drawn: window.dreamvid.framesDrawn, version: window.dreamvid.lastVersion};
}"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    app = create_app([tiny_run], None, data_dir=tmp_path_factory.mktemp("studio-data"))
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.problems = []
    pg.on("console", lambda m: pg.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.goto(server + "/")
    yield pg
    context.close()


def wait_frames(page, n: int, timeout_ms: int = 20000) -> None:
    page.wait_for_function(f"() => window.dreamvid.framesDrawn >= {n}", timeout=timeout_ms)


def prepare_restarts(page) -> None:
    """Once the stream runs: trace frame checksums and set "Restart here" to seed 7 at source frame 3."""
    wait_frames(page, 5)
    page.evaluate("() => { window.dreamvid.trace = true; }")
    page.locator("#reseed-panel summary").click()
    page.locator("#reseed-frame").fill("3")
    page.fill("#reseed-seed", "7")


def dream_after_restart(page, temperature: float, n: int = 12) -> dict[int, int]:
    """Move the temperature slider, press "Restart here" (seed 7, frame 3), and return the checksums of the
    restarted dream's frames as the page drew them, by their number in the dream."""
    page.locator("#temperature").fill(str(temperature))  # fires input, as dragging the slider does
    page.click("#reseed-from-frame")
    version = page.evaluate("() => window.dreamvid.sentVersion")
    page.wait_for_function(
        f"() => [...window.dreamvid.checksums.keys()].filter(k => k.startsWith('{version}:')).length >= {n}",
        timeout=20000)
    return {int(k.split(":")[1]): v for k, v in page.evaluate("() => [...window.dreamvid.checksums]")
            if int(k.split(":")[0]) == version}


def test_page_loads_and_streams_changing_frames(page):
    wait_frames(page, 5)
    first = page.evaluate(READ_CANVAS)
    assert len(first["pixels"]) == 32 * 32 * 3 and max(first["pixels"]) > 0
    time.sleep(0.5)
    second = page.evaluate(READ_CANVAS)
    time.sleep(0.5)
    third = page.evaluate(READ_CANVAS)
    assert third["drawn"] > second["drawn"] > first["drawn"]
    assert first["pixels"] != second["pixels"] and second["pixels"] != third["pixels"]
    assert page.locator("#connection").inner_text() == "live"
    assert page.locator("#run-select option").count() == 1
    assert page.locator(".card").count() == 1 and page.locator(".card img").count() == 1
    page.locator("#reseed-panel summary").click()
    page.wait_for_function("() => document.getElementById('reseed-thumb').complete && "
                           "document.getElementById('reseed-thumb').naturalWidth === 32")
    assert page.problems == []


def test_temperature_control_changes_the_stream(page):
    prepare_restarts(page)
    calm = dream_after_restart(page, 0.05)
    wild = dream_after_restart(page, 2.5)
    calm_again = dream_after_restart(page, 0.05)
    # The same seed at the same temperature draws the same dream, pixel for pixel, so every difference between
    # the first two is the temperature's doing.
    same = [i for i in calm if i in calm_again]
    assert len(same) >= 6 and all(calm[i] == calm_again[i] for i in same), (calm, calm_again)
    common = [i for i in calm if i in wild]
    assert len(common) >= 6 and sum(calm[i] != wild[i] for i in common) >= 0.9 * len(common), (calm, wild)
    latencies = page.evaluate("() => window.dreamvid.latencies")
    assert max(latencies[-3:]) < 1000, latencies  # bench_serve.py measures it properly; this only catches a stall
    assert page.problems == []


def test_reproject_switch_changes_the_stream(page):
    prepare_restarts(page)
    plain = dream_after_restart(page, 1.0)
    page.check("#reproject")
    reprojected = dream_after_restart(page, 1.0)
    page.uncheck("#reproject")
    plain_again = dream_after_restart(page, 1.0)
    same = [i for i in plain if i in plain_again]
    assert len(same) >= 6 and all(plain[i] == plain_again[i] for i in same), (plain, plain_again)
    common = [i for i in plain if i in reprojected and i > 0]
    assert len(common) >= 6 and sum(plain[i] != reprojected[i] for i in common) >= 0.9 * len(common)
    assert page.problems == []


def test_non_video_upload_shows_a_clear_error(page, tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is a text file with a video's name\n" * 20)
    page.set_input_files("#upload-file", str(fake))
    page.click("#upload-submit")
    error = page.locator("#train-error")
    error.wait_for(state="visible", timeout=10000)
    text = error.inner_text()
    assert "holiday.mp4" in text and "not a video" in text and "Traceback" not in text
    assert page.locator("#jobs .job").count() == 0


def test_upload_trains_a_run_that_appears_and_streams(page, tmp_path):
    clip = make_video(tmp_path / "bouncing shapes.mp4", n_frames=48, width=48, height=48, fps=24, seed=3)
    page.set_input_files("#upload-file", str(clip))
    page.fill("#upload-name", "from-page")
    page.select_option("#upload-preset", "tiny")
    page.select_option("#upload-size", "32")
    page.fill("#upload-minutes", "0.1")
    page.click("#upload-submit")
    job = page.locator(".job").first
    job.wait_for(timeout=10000)
    assert "from-page" in job.inner_text()
    page.wait_for_function("() => ['running', 'done'].includes(document.querySelector('.job').dataset.state)",
                           timeout=20000)
    page.wait_for_function("() => document.querySelector('.job').dataset.state === 'done'", timeout=90000)
    card = page.locator(".card", has_text="from-page")
    card.wait_for(timeout=20000)
    assert page.locator(".job .job-error").is_hidden()
    drawn = page.evaluate("() => window.dreamvid.framesDrawn")
    card.get_by_role("button", name="Dream").click()
    page.wait_for_function(f"() => window.dreamvid.framesDrawn > {drawn + 5}", timeout=20000)
    selected = page.locator("#run-select").evaluate("s => s.options[s.selectedIndex].text")
    assert selected == "from-page"
    first = page.evaluate(READ_CANVAS)["pixels"]
    time.sleep(0.4)
    assert page.evaluate(READ_CANVAS)["pixels"] != first
    assert page.problems == []
