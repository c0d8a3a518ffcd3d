"""The self-contained page: one HTML file that dreams a run forever, offline, from `file://`.

Everything the page runs is inside it: the manifest, both ONNX graphs, and onnxruntime-web's WebAssembly build
(vendor/, checked against vendor.json before it is used), each gzipped and base64'd. The page's content security
policy forbids every request, so what it does not carry it cannot get.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import DreamvidError
from ..files import atomic_write_text

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
RUNTIME = "ort.wasm.bundle.min.mjs"
WASM = "ort-wasm-simd-threaded.wasm.gz"


def write_page(path: Path, graphs: dict[str, bytes], manifest: dict[str, Any]) -> None:
    atomic_write_text(path, render_page(graphs, manifest))


def render_page(graphs: dict[str, bytes], manifest: dict[str, Any]) -> str:
    """The page's HTML for a run's graphs and manifest."""
    vendor = read_vendor()
    data = {"manifest": manifest, "runtime": vendor["version"], "ort": _pack(vendor["files"][RUNTIME]),
            "wasm": base64.b64encode(vendor["files"][WASM]).decode("ascii"),
            "step": _pack(graphs[manifest["step"]["file"]]), "decoder": _pack(graphs[manifest["decoder"]["file"]])}
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")   # no "</script>" inside the script
    title = _escape(f"{manifest['run']['name']} ({manifest['run']['preset']})")
    template = (HERE / "page.html").read_text(encoding="utf-8")
    return (template.replace("__TITLE__", title).replace("__SIZE__", str(manifest["size"]))
            .replace("__DATA__", text))


def read_vendor() -> dict[str, Any]:
    """vendor.json with each vendored file's bytes under "files", after checking each against its SHA-256."""
    record = json.loads((VENDOR / "vendor.json").read_text())
    files = {}
    for name, facts in record["files"].items():
        data = (VENDOR / name).read_bytes()
        shipped = gzip.decompress(data) if name.endswith(".gz") else data
        if hashlib.sha256(shipped).hexdigest() != facts["sha256"]:
            raise DreamvidError(f"the vendored {name} does not match vendor.json",
                                "reinstall dreamvid, or run scripts/vendor_onnxruntime_web.py")
        files[name] = data
    return {**record, "files": files}


def _pack(data: bytes) -> str:
    return base64.b64encode(gzip.compress(data, 9, mtime=0)).decode("ascii")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
