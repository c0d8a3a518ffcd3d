"""Open an exported page in Firefox from file:// and report what its own counters say.

    python scripts/check_page_firefox.py dream.html        # needs Debian's firefox-esr (apt-get install firefox-esr)

Playwright drives only its own Firefox build, which cannot be downloaded here, so this speaks WebDriver BiDi (which
Firefox serves itself) over a WebSocket: navigate to the page, poll `window.dreamvid`, ask for 60 frames/s, and
print the first frame's time, the frame rate and any console error. Exit 1 when the page does not dream.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

PORT = 9333


class Bidi:
    def __init__(self, socket):
        self.socket, self.ids, self.errors = socket, itertools.count(1), []

    async def call(self, method: str, params: dict) -> dict:
        number = next(self.ids)
        await self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("method") == "log.entryAdded" and message["params"].get("level") == "error":
                self.errors.append(message["params"].get("text"))
            if message.get("id") == number:
                if message.get("type") == "error":
                    raise RuntimeError(message)
                return message["result"]

    async def evaluate(self, context: str, expression: str):
        result = await self.call("script.evaluate", {"expression": expression, "target": {"context": context},
                                                     "awaitPromise": False})
        return result["result"].get("value")


async def check(page: Path) -> int:
    browser = subprocess.Popen(["firefox-esr", "--headless", "--no-remote", "--profile", tempfile.mkdtemp(),
                                "--remote-debugging-port", str(PORT)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        socket = await _connect()
        bidi = Bidi(socket)
        await bidi.call("session.new", {"capabilities": {}})
        await bidi.call("session.subscribe", {"events": ["log.entryAdded"]})
        context = (await bidi.call("browsingContext.getTree", {}))["contexts"][0]["context"]
        await bidi.call("browsingContext.navigate", {"context": context, "url": page.resolve().as_uri(),
                                                     "wait": "complete"})
        view = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (view.get("frames") or view.get("error")):
            view = json.loads(await bidi.evaluate(context, "JSON.stringify(window.dreamvid || {})"))
            await asyncio.sleep(0.1)
        await bidi.evaluate(context, "document.getElementById('speed').value = 60, "
                                     "document.getElementById('speed').dispatchEvent(new Event('input'))")
        rates = []
        for _ in range(8):
            await asyncio.sleep(1)
            rates.append(json.loads(await bidi.evaluate(context, "JSON.stringify(window.dreamvid)"))["fps"])
        await socket.close()
    finally:
        browser.terminate()
        browser.wait()
    firefox = subprocess.run(["firefox-esr", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{firefox}: first frame after {view.get('firstFrameMs')} ms; asked for 60 frames/s: "
          f"{sorted(rates)[len(rates) // 2]} by the page's counter (each second: {rates}); "
          f"error: {view.get('error')}; console errors: {bidi.errors}")
    return 0 if view.get("frames") and not view.get("error") and not bidi.errors else 1


async def _connect():
    for _ in range(150):
        try:
            return await websockets.connect(f"ws://127.0.0.1:{PORT}/session", max_size=None)
        except OSError:
            await asyncio.sleep(0.2)
    raise SystemExit("firefox did not open its WebDriver BiDi port")


if __name__ == "__main__":
    sys.exit(asyncio.run(check(Path(sys.argv[1]))))
