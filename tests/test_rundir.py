"""dreamvid.rundir: the run folder's layout, and everything in it saved and loaded symmetrically."""
from __future__ import annotations

import pytest
import torch

from dreamvid.config import PRESETS, make_config
from dreamvid.errors import DreamvidError, UsageError
from dreamvid.models import build_vae
from dreamvid.rundir import OWN_FILES, RunDir


@pytest.fixture
def run(tmp_path) -> RunDir:
    return RunDir(tmp_path / "run").create()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_config_round_trips(run, preset):
    config = make_config(preset)
    run.write_config(config)
    assert run.is_run() and run.read_config() == config


def test_weights_and_optimizer_round_trip(run):
    config = make_config("tiny").vae
    vae = build_vae(config)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    vae.loss(torch.rand(2, 3, 32, 32))[0].backward()
    optimizer.step()
    run.save_weights("vae", vae)
    run.save_optimizer("vae", optimizer)
    again = build_vae(config)
    again_optimizer = torch.optim.Adam(again.parameters(), lr=1e-3)
    assert run.load_optimizer("rnn", again_optimizer) is False  # nothing saved for it yet
    run.load_weights("vae", again)
    assert run.load_optimizer("vae", again_optimizer)
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(vae.encode(images)[0], again.encode(images)[0])
    saved, loaded = optimizer.state_dict()["state"], again_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[i][k], loaded[i][k]) for i in saved for k in saved[i] if torch.is_tensor(saved[i][k]))


def test_latents_and_best_weights_round_trip(run):
    latents = {"mu": torch.randn(12, 4), "logvar": torch.zeros(12, 4), "train": torch.tensor([[0, 10]]),
               "val": torch.tensor([[10, 12]]), "sequences": torch.tensor([[0, 12]])}
    run.save_latents(latents)
    assert all(torch.equal(value, run.load_latents()[key]) for key, value in latents.items())
    assert run.load_best_rnn() is None
    run.save_best_rnn({"head.weight": torch.ones(2, 2)})
    assert torch.equal(run.load_best_rnn()["head.weight"], torch.ones(2, 2))


def test_state_log_and_progress(run):
    assert run.read_state() is None
    run.write_state({"stage": "rnn", "epoch": 2, "step": 5, "elapsed": 1.5})
    assert run.read_state() == {"stage": "rnn", "epoch": 2, "step": 5, "elapsed": 1.5, "files": {}}
    run.state_path.write_text("{torn")
    with pytest.raises(DreamvidError, match="damaged"):
        run.read_state()
    run.append_log({"stage": "vae", "epoch": 0})
    run.append_log({"stage": "vae", "epoch": 1})
    with open(run.log_path, "a") as log:
        log.write('{"stage": "rn')  # a write cut short
    assert run.read_log() == [{"stage": "vae", "epoch": 0}, {"stage": "vae", "epoch": 1}]
    assert not run.is_finished()
    run.write_progress({"stage": "done", "finished": True})
    assert run.read_progress() == {"stage": "done", "finished": True} and run.is_finished()


def test_what_a_folder_is(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        RunDir(tmp_path / "missing").require_run()
    with pytest.raises(UsageError, match="not a dreamvid run"):
        RunDir(tmp_path).require_run()
    run = RunDir(tmp_path / "run").create()
    run.write_config(make_config("tiny"))
    with pytest.raises(DreamvidError, match="has not finished training"):
        run.require_trained()
    assert not run.is_trained() and run.frame_cache("0123") is None


def test_create_refuses_a_run_and_force_deletes_only_dreamvids_own_files(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.write_config(make_config("tiny"))
    run.append_log({"stage": "vae"})
    (run.path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already holds a run"):
        run.create()
    run.create(force=True)
    assert sorted(p.name for p in run.path.iterdir()) == ["notes.txt", "previews", "state"]
    assert set(OWN_FILES) >= {"config.json", "log.jsonl", "state", "previews"}
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        RunDir(tmp_path / "file").create()
