"""`dreamvid serve`: the browser studio -- a live endless dream with controls, training from the page, a gallery.

`serve(...)` runs it (blocking); `create_app(...)` returns the Starlette app (tests, embedding).
"""
from __future__ import annotations

__all__ = ["serve", "create_app"]


def serve(*args, **kwargs):
    from .app import serve as _serve

    return _serve(*args, **kwargs)


def create_app(*args, **kwargs):
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


serve.__doc__ = """serve(run_dirs, runs_dir=None, host="127.0.0.1", port=7860, data_dir=None, max_upload_bytes=2 GiB)

Run the studio until Ctrl-C (blocks). Warns on stderr when `host` is not loopback."""
