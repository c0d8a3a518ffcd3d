"""`dreamvid serve`: the browser studio -- a live endless dream with controls, training from the page, a gallery.

`serve(...)` runs it (blocking); `create_app(...)` returns the Starlette app (tests, embedding). Both load
lazily, so importing the package does not import the web stack.
"""
from __future__ import annotations

__all__ = ["serve", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
