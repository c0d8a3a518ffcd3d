"""Refresh the onnxruntime-web files that `dreamvid export --html` inlines into its page.

    python scripts/vendor_onnxruntime_web.py [VERSION]

Installs the npm package `onnxruntime-web` at VERSION (default: the one vendored now) into a temporary folder
with the machine's npm, and copies into dreamvid/export/vendor/:
    ort.wasm.bundle.min.mjs        the WebAssembly-only ES module, its loader glue bundled in
    ort-wasm-simd-threaded.wasm.gz the runtime itself, gzipped (14 MB -> 3.7 MB; the page inflates it)
    LICENSE                        the package's licence
    vendor.json                    package, version, licence and the SHA-256 of each file as npm shipped it
The page fetches nothing: the export reads these files, checks them against vendor.json, and inlines them.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "dreamvid" / "export" / "vendor"
PACKAGE = "onnxruntime-web"
FILES = {"ort.wasm.bundle.min.mjs": "ort.wasm.bundle.min.mjs",
         "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm.gz"}
MIT_TEMPLATE = """MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def current_version() -> str:
    return json.loads((VENDOR / "vendor.json").read_text())["version"]


def refresh(version: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["npm", "install", "--no-save", "--ignore-scripts", "--prefix", folder,
                        f"{PACKAGE}@{version}"], check=True, stdout=subprocess.DEVNULL)
        package = Path(folder) / "node_modules" / PACKAGE
        meta = json.loads((package / "package.json").read_text())
        VENDOR.mkdir(parents=True, exist_ok=True)
        shipped = {}
        for source, stored in FILES.items():
            data = (package / "dist" / source).read_bytes()
            shipped[stored] = {"from": f"dist/{source}", "sha256": hashlib.sha256(data).hexdigest()}
            (VENDOR / stored).write_bytes(gzip.compress(data, 9, mtime=0) if stored.endswith(".gz") else data)
        licence = package / "LICENSE"
        (VENDOR / "LICENSE").write_text(licence.read_text() if licence.exists() else MIT_TEMPLATE)
    record = {"package": PACKAGE, "version": meta["version"], "license": meta.get("license"),
              "source": f"https://www.npmjs.com/package/{PACKAGE}/v/{meta['version']}", "files": shipped}
    (VENDOR / "vendor.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"vendored {PACKAGE} {meta['version']} into {VENDOR}")


if __name__ == "__main__":
    refresh(sys.argv[1] if len(sys.argv) > 1 else current_version())
