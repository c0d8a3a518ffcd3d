"""The studio's guards against other sites: Host and Origin checks, a custom header on state changes, and
security headers on every response (see docs/serve.md, "Safety")."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
       "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
# Eval reports are self-contained pages: they may run their own scripts, but in an opaque origin.
REPORT_CSP = "sandbox allow-scripts allow-popups; frame-ancestors 'none'"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GuardMiddleware:
    """Host and Origin checks for every request and WebSocket, and a custom header on every state change.

    - Host must be a loopback name, or off loopback one of the names given with --allowed-host (stops
      DNS-rebinding pages).
    - An Origin header, when present, must be this server (stops other sites' pages driving it, WebSocket
      included).
    - POSTs must carry `X-Dreamvid: 1`, which a cross-site form or simple request cannot add.
    """

    def __init__(self, app, loopback_only: bool, allowed_hosts: tuple[str, ...] = ()):
        self.app = app
        self.loopback_only = loopback_only
        self.allowed_hosts = {name.strip("[]").lower() for name in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = self.problem(scope)
        if problem is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": problem})
            return
        response = JSONResponse({"error": problem}, status_code=403)
        await response(scope, receive, send)

    def problem(self, scope) -> str | None:
        """Why this request is refused, or None."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        if not is_loopback(name) and (self.loopback_only or name not in self.allowed_hosts):
            return "unexpected Host header; open the studio at an address it was started to answer"
        origin = headers.get("origin")
        if origin and (origin == "null" or urlsplit(origin).netloc != host):
            return "requests from other sites are not accepted"
        if (scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS")
                and headers.get("x-dreamvid") != "1"):
            return "state-changing requests need the X-Dreamvid: 1 header"
        return None


class SecurityHeaders:
    """nosniff, no referrer, no framing, no caching, and the strict CSP unless a response sets its own."""

    EXTRA = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
             (b"x-frame-options", b"DENY"), (b"cache-control", b"no-cache"),
             (b"content-security-policy", CSP.encode())]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                message = dict(message, headers=headers + [(k, v) for k, v in self.EXTRA if k not in names])
            await send(message)

        return await self.app(scope, receive, send_with_headers)
