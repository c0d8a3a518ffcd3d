"""`dreamvid export`: a trained run as ONNX graphs (graphs.py) with a manifest, or as one HTML page that dreams
offline.

    page.py      the self-contained page: graphs, manifest and onnxruntime-web (vendor/) inlined
    vendor/      onnxruntime-web's WebAssembly build, its licence and checksums (scripts/vendor_onnxruntime_web.py)

    export("runs/clip", onnx="clip-onnx")      # step.onnx, decoder.onnx, dreamvid-onnx.json
    export("runs/clip", html="clip.html")      # open it from the file, no network needed
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DreamvidError, UsageError
from ..graphs import require_onnx

MANIFEST = "dreamvid-onnx.json"
STEP, DECODER = "step.onnx", "decoder.onnx"
SEEDS = 8   # starting points in the manifest: each a held-out source frame's latent and the state its context left


@dataclass
class Exported:
    """What an export wrote and how closely its graphs match torch."""
    manifest: dict[str, Any]
    onnx_dir: Path | None
    html: Path | None

    def summary(self) -> str:
        check = self.manifest["verified"]
        lines = [f"graphs match torch to {check['step_max_abs_diff']:.1e} (step), "
                 f"{check['decoder_max_abs_diff']:.1e} (decoder) with onnxruntime {check['onnxruntime']}"
                 + (f"; {check['step_cells_drawn_differently']:.3%} of map cells drawn differently (a near-tie)"
                    if check["step_cells_drawn_differently"] else "")]
        if self.onnx_dir is not None:
            lines.append(f"wrote {self.onnx_dir / STEP}, {self.onnx_dir / DECODER} and {self.onnx_dir / MANIFEST}")
        if self.html is not None:
            lines.append(f"wrote {self.html}  ({self.html.stat().st_size / 2 ** 20:.1f} MB; open it in a browser)")
        return "\n".join(lines)


def export(run_dir: str | Path, onnx: str | Path | None = None, html: str | Path | None = None,
           force: bool = False) -> Exported:
    """Export the run at `run_dir` as ONNX graphs into the folder `onnx`, as the page `html`, or both. Existing
    outputs are kept unless `force`."""
    if onnx is None and html is None:
        raise UsageError("nothing to export to", "give --onnx DIR, --html FILE or both")
    targets = _targets(onnx, html)
    for target in targets:
        if target.exists() and not force:
            raise UsageError(f"{target} already exists", "pass --force to replace it")
    require_onnx()
    from ..dreaming import load
    dreamer = load(run_dir, device="cpu")
    if onnx is not None:
        _make_folder(Path(onnx))
    if html is not None and not Path(html).parent.is_dir():
        raise DreamvidError(f"cannot write {html}: {Path(html).parent} is not a folder", "choose a folder that exists")
    graphs, manifest = build(dreamer)   # the slow part, once the outputs are known to be writable
    if onnx is not None:
        _write_onnx(Path(onnx), graphs, manifest)
    if html is not None:
        from .page import write_page
        write_page(Path(html), graphs, manifest)
    return Exported(manifest, Path(onnx) if onnx is not None else None, Path(html) if html is not None else None)


def build(dreamer) -> tuple[dict[str, bytes], dict[str, Any]]:
    """A loaded run's graphs (file name -> ONNX bytes), checked against torch, and its manifest."""
    import torch
    from ..graphs import (MAX_ABS_DIFF, StepCheck, export_decoder, export_step, step_inputs, verify_decoder,
                          verify_step)
    rnn, vae, config = dreamer.rnn, dreamer.vae, dreamer.config
    seeds = [dreamer.session(seed=index) for index in range(SEEDS)]
    start = seeds[0]
    example = step_inputs(rnn, start.z, start.state, config.rnn.temperature, torch.Generator().manual_seed(0))
    graphs = {STEP: export_step(rnn, config.rnn.decode_spread, example),
              DECODER: export_decoder(vae, torch.cat([s.z for s in seeds[:2]]))}
    checks = [verify_step(graphs[STEP], rnn, config.rnn.decode_spread, s.z, s.state, config.rnn.temperature,
                          seed=index) for index, s in enumerate(seeds[:2])]
    step_check = StepCheck(max(c.max_abs_diff for c in checks), max(c.cells_drawn_differently for c in checks))
    decoder_diff = verify_decoder(graphs[DECODER], vae, torch.cat([s.z for s in seeds]))
    if not step_check.acceptable() or decoder_diff > MAX_ABS_DIFF:
        raise DreamvidError(f"the ONNX graphs differ from torch: {step_check.max_abs_diff:.2g} (step), "
                            f"{decoder_diff:.2g} (decoder), {step_check.cells_drawn_differently:.2%} of map cells "
                            f"drawn differently", "dream with torch instead, or report the preset")
    return graphs, _manifest(dreamer, seeds, example, step_check, decoder_diff)


def _manifest(dreamer, seeds: list, example: tuple, step_check, decoder_diff: float) -> dict[str, Any]:
    """What a caller needs to dream with the graphs, and how closely they matched torch."""
    import onnxruntime
    from .. import __version__
    from ..graphs import step_names
    rnn, vae, config = dreamer.rnn, dreamer.vae, dreamer.config
    names, outputs = step_names(rnn)
    return {
        "format": "dreamvid-onnx", "format_version": 1, "dreamvid": __version__,
        "exported": datetime.date.today().isoformat(),
        "run": {"name": Path(dreamer.run_dir).resolve().name, "preset": config.preset,
                "sources": [Path(source).name for source in config.data.sources]},
        "model": f"{config.vae.kind} VAE + {config.rnn.kind} dream model",
        "size": dreamer.size, "fps": dreamer.fps, "latent_shape": list(vae.latent_shape),
        "temperature": config.rnn.temperature, "decode_spread": config.rnn.decode_spread,
        "step": {"file": STEP, "inputs": _step_inputs(names, example, rnn.noise_kinds()), "outputs": outputs},
        "decoder": {"file": DECODER, "inputs": [{"name": "z", "shape": ["n", *vae.latent_shape]}],
                    "outputs": [{"name": "frames", "shape": ["n", dreamer.size, dreamer.size, 3],
                                 "range": [0, 1], "note": "x 255, rounded: RGB pixels"}]},
        "seeds": [_seed(session, rnn) for session in seeds],
        "verified": {"step_max_abs_diff": step_check.max_abs_diff, "decoder_max_abs_diff": decoder_diff,
                     "step_cells_drawn_differently": step_check.cells_drawn_differently,
                     "onnxruntime": onnxruntime.__version__},
    }


def _step_inputs(names: list[str], example, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    described = []
    for index, (name, value) in enumerate(zip(names, example)):
        entry = {"name": name, "shape": list(value.shape)}
        if index >= 4:
            entry["distribution"] = kinds[index - 4]
        described.append(entry)
    return described


def _seed(session, rnn) -> dict[str, Any]:
    """Where a dream can start: a held-out frame's latent and the recurrent state its context leaves."""
    from ..graphs import zero_state
    h, c = session.state if session.state is not None else zero_state(rnn)
    return {"frame": session.frame_index, "z": _numbers(session.z), "h": _numbers(h), "c": _numbers(c)}


def _numbers(tensor) -> list[float]:
    return [float(x) for x in tensor.float().flatten().tolist()]


def _targets(onnx: str | Path | None, html: str | Path | None) -> list[Path]:
    targets = [Path(onnx) / name for name in (STEP, DECODER, MANIFEST)] if onnx is not None else []
    if html is not None:
        if Path(html).suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"{html} is not an .html file", "name the page e.g. dream.html")
        targets.append(Path(html))
    return targets


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DreamvidError(f"cannot make {folder}: {error.strerror.lower()}", "choose a folder you can write") \
            from None


def _write_onnx(folder: Path, graphs: dict[str, bytes], manifest: dict[str, Any]) -> None:
    from ..files import atomic_replace, atomic_write_json
    for name, graph in graphs.items():
        atomic_replace(folder / name, lambda tmp, graph=graph: Path(tmp).write_bytes(graph))
    atomic_write_json(folder / MANIFEST, manifest)
