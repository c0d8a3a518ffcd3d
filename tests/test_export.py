"""`dreamvid export` and `dreamvid dream --backend onnx`: ONNX graphs that match torch for every shipped preset,
used the way the manifest tells a caller to, and the export's bad-input cases."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from conftest import copy_run
from dreamvid.cli import main
from dreamvid.dreaming import load
from dreamvid.errors import DreamvidError
from dreamvid.graphs import MAX_ABS_DIFF, MAX_CELLS_DRAWN_DIFFERENTLY, StepGraph, export_step
from synthetic import make_video
from test_bad_input import assert_error, cli, snapshot

SHIPPED = ["default", "worldmodels", "classic"]


@pytest.fixture(scope="module")
def untrained_runs(tmp_path_factory) -> dict[str, Path]:
    """A run of each shipped preset, as `dreamvid train` makes it with no epochs: the preset's real models,
    freshly initialised (matching torch does not depend on what they learned)."""
    root = tmp_path_factory.mktemp("presets")
    clip = make_video(root / "clip.mp4", n_frames=160, width=64, height=64)
    runs = {}
    for preset in SHIPPED:
        runs[preset] = root / preset
        assert main(["train", str(clip), "-o", str(runs[preset]), "--preset", preset, "--vae-epochs", "0",
                     "--rnn-epochs", "0", "--quiet"]) == 0
    return runs


def run_as_manifest_says(folder: Path, steps: int, seed: int = 0) -> tuple[list[np.ndarray], list[tuple]]:
    """Dream `steps` frames with ONNX Runtime alone, as any caller would from the manifest: start from its first
    seed, draw each noise input from its distribution, feed next_z/next_h/next_c back, decode `shown`. Returns
    the frames and each step's inputs."""
    manifest = json.loads((folder / "dreamvid-onnx.json").read_text())
    step = onnxruntime.InferenceSession(str(folder / manifest["step"]["file"]))
    decoder = onnxruntime.InferenceSession(str(folder / manifest["decoder"]["file"]))
    shapes = {entry["name"]: entry["shape"] for entry in manifest["step"]["inputs"]}
    first = manifest["seeds"][0]
    state = {name: np.array(first[name], np.float32).reshape(shapes[name]) for name in ("z", "h", "c")}
    rng = np.random.default_rng(seed)
    frames, inputs = [], []
    for _ in range(steps):
        feed = {**state, "temperature": np.array(manifest["temperature"], np.float32)}
        for entry in manifest["step"]["inputs"][4:]:
            draw = rng.random if entry["distribution"] == "uniform" else rng.standard_normal
            feed[entry["name"]] = draw(entry["shape"]).astype(np.float32)
        inputs.append(tuple(feed[entry["name"]] for entry in manifest["step"]["inputs"]))
        shown, state["z"], state["h"], state["c"] = step.run(None, feed)
        frames.append(decoder.run(None, {"z": shown})[0])
    return frames, inputs


@pytest.mark.parametrize("preset", SHIPPED)
def test_every_shipped_preset_exports_graphs_that_match_torch(preset, untrained_runs, tmp_path, capsys):
    out = tmp_path / "onnx"
    code, stdout, err = cli(capsys, "export", untrained_runs[preset], "--onnx", out)
    assert code == 0, err
    assert "graphs match torch" in stdout
    manifest = json.loads((out / "dreamvid-onnx.json").read_text())
    assert manifest["run"]["preset"] == preset
    assert manifest["verified"]["step_max_abs_diff"] <= MAX_ABS_DIFF
    assert manifest["verified"]["decoder_max_abs_diff"] <= MAX_ABS_DIFF
    frames, inputs = run_as_manifest_says(out, steps=4)
    size = manifest["size"]
    assert all(f.shape == (1, size, size, 3) and 0 <= f.min() and f.max() <= 1 for f in frames)
    # The same inputs through torch's own step give the same outputs: the state to 1e-4, and the latents too but
    # for the rare map cell whose draw sits within float rounding of a tie.
    dreamer = load(untrained_runs[preset], device="cpu")
    graph = StepGraph(dreamer.rnn, dreamer.config.rnn.decode_spread).eval()
    step = onnxruntime.InferenceSession(str(out / "step.onnx"))
    names = [entry["name"] for entry in manifest["step"]["inputs"]]
    with torch.no_grad():
        for feed in inputs:
            shown, z, h, c = (e.numpy() for e in graph(*map(torch.from_numpy, feed)))
            got = step.run(None, dict(zip(names, feed)))
            assert np.abs(got[2] - h).max() <= MAX_ABS_DIFF and np.abs(got[3] - c).max() <= MAX_ABS_DIFF
            for value, reference in zip(got[:2], (shown, z)):
                assert np.mean(np.abs(value - reference) > MAX_ABS_DIFF) <= MAX_CELLS_DRAWN_DIFFERENTLY


def test_trained_run_exports_both_and_dreams_through_onnx_as_through_torch(cli_run, tmp_path, capsys):
    code, stdout, err = cli(capsys, "export", cli_run.path, "--onnx", tmp_path / "onnx", "--html",
                            tmp_path / "dream.html")
    assert code == 0, err
    assert (tmp_path / "onnx" / "step.onnx").stat().st_size > 0 and "dream.html" in stdout
    page = (tmp_path / "dream.html").read_text()
    assert page.count("</script>") == 2 and '"format":"dreamvid-onnx"' in page
    torch_frames = np.stack(list(load(cli_run.path).dream(frames=24, seed=3)))
    onnx_frames = np.stack(list(load(cli_run.path, backend="onnx").dream(frames=24, seed=3)))
    assert np.abs(torch_frames.astype(int) - onnx_frames).max() <= 1   # rounding of the last 8-bit step
    assert torch_frames.std() > 0
    code, _, err = cli(capsys, "dream", cli_run.path, "--backend", "onnx", "--frames", "12", "-o",
                       tmp_path / "dream.mp4", "--quiet")
    assert code == 0 and (tmp_path / "dream.mp4").stat().st_size > 0, err


# ---------------------------------------------------------------------------------------------- bad input


def test_export_of_what_is_not_a_run(tmp_path, capsys):
    (tmp_path / "holiday").mkdir()
    code, _, err = cli(capsys, "export", tmp_path / "holiday", "--html", tmp_path / "d.html")
    assert_error(code, err, 2, "holiday", "not a dreamvid run")
    code, _, err = cli(capsys, "export", tmp_path / "missing", "--onnx", tmp_path / "o")
    assert_error(code, err, 2, "missing", "does not exist")
    assert not (tmp_path / "d.html").exists() and not (tmp_path / "o").exists()


def test_export_of_a_damaged_run(cli_run, tmp_path, capsys):
    run = copy_run(cli_run, tmp_path)
    weights = run / "rnn.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = cli(capsys, "export", run, "--html", tmp_path / "d.html")
    assert_error(code, err, 1, "rnn.safetensors", "damaged")
    assert not (tmp_path / "d.html").exists()


def test_export_needs_a_target_and_an_html_name(cli_run, tmp_path, capsys):
    code, _, err = cli(capsys, "export", cli_run.path)
    assert_error(code, err, 2, "nothing to export", "--html")
    code, _, err = cli(capsys, "export", cli_run.path, "--html", tmp_path / "dream.mp4")
    assert_error(code, err, 2, "not an .html file")


def test_existing_outputs_are_kept_unless_forced(cli_run, tmp_path, capsys):
    page = tmp_path / "mine.html"
    page.write_text("my own page")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "decoder.onnx").write_bytes(b"my own graph")
    before = snapshot(tmp_path)
    for target in (["--html", page], ["--onnx", tmp_path / "onnx"]):
        code, _, err = cli(capsys, "export", cli_run.path, *target)
        assert_error(code, err, 2, "already exists", "--force")
    assert snapshot(tmp_path) == before
    code, _, err = cli(capsys, "export", cli_run.path, "--html", page, "--force")
    assert code == 0, err
    assert page.read_text().startswith("<!doctype html>")


def test_unwritable_outputs_fail_in_one_line(cli_run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = cli(capsys, "export", cli_run.path, "--onnx", blocker / "onnx")
    assert_error(code, err, 1, "cannot")
    code, _, err = cli(capsys, "export", cli_run.path, "--html", blocker / "dream.html")
    assert_error(code, err, 1, "cannot write")
    assert blocker.read_text() == "not a folder"


def test_a_graph_the_exporter_cannot_trace_is_one_clear_error():
    class DataDependent(torch.nn.Module):   # Python control flow on a tensor's value: torch.export refuses it
        def noise_kinds(self):
            return ()

        def dream_step(self, z, state, temperature, noise, decode_spread):
            return (z if float(z.sum()) > 0 else -z), z, state

    example = (torch.ones(1, 4), torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.tensor(1.0))
    with pytest.raises(DreamvidError, match="cannot be exported to ONNX"):
        export_step(DataDependent(), 1.0, example)


def test_onnx_backend_refuses_what_it_cannot_do(cli_run, tmp_path, capsys):
    out = tmp_path / "dream.mp4"
    code, _, err = cli(capsys, "dream", cli_run.path, "--backend", "onnx", "--reproject", "--frames", "4", "-o", out)
    assert_error(code, err, 2, "re-projection", "torch")
    code, _, err = cli(capsys, "dream", cli_run.path, "--backend", "onnx", "--device", "cuda", "-o", out)
    assert_error(code, err, 2, "onnx backend", "cpu")
    assert not out.exists()
