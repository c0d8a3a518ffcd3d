"""Open a running studio in Debian's Chromium and wait until its live dream has drawn frames: exit 0 if it streams."""
from __future__ import annotations

import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
FRAMES = 30


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(url: str) -> int:
    wait_until_up(url)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        try:
            page.wait_for_function(f"() => window.dreamvid.framesDrawn >= {FRAMES}", timeout=30000)
        except Exception:
            print(f"the installed studio drew {page.evaluate('window.dreamvid.framesDrawn')} frames; status: "
                  f"{page.inner_text('body')[:300]!r}", file=sys.stderr)
            return 1
        browser.close()
    if errors:
        print("page errors: " + "; ".join(errors), file=sys.stderr)
        return 1
    print(f"the installed studio streams: {FRAMES} frames drawn")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
