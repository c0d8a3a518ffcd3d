"""dreamvid.dreaming: loading a run, dreaming it (lazily, reproducibly, primed, steered), saving the dream."""
from __future__ import annotations

import json
import os

import av
import numpy as np
import psutil
import pytest
import torch

import dreamvid
from conftest import old_style_config, vector_default
from dreamvid.cli import main
from dreamvid.config import make_config
from dreamvid.device import core_for_a_worker
from dreamvid.graphs import TracedStep
from dreamvid.models import build_rnn, build_vae
from dreamvid.rundir import RunDir


@pytest.fixture(scope="module")
def dreamer(cli_run):
    return dreamvid.load(cli_run.path, device="cpu")


def test_loaded_run_dreams_identically_for_a_seed_and_differently_across_seeds(cli_run):
    a = np.stack(list(dreamvid.load(cli_run.path, device="cpu").dream(frames=20, seed=3)))
    b = np.stack(list(dreamvid.load(cli_run.path, device="cpu").dream(frames=20, seed=3)))
    c = np.stack(list(dreamvid.load(cli_run.path, device="cpu").dream(frames=20, seed=4)))
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_stream_and_session_controls(dreamer):
    stream = dreamer.stream(temperature=1.0, seed=0)
    frames = [next(stream) for _ in range(40)]
    assert all(f.shape == (32, 32, 3) for f in frames)
    session = dreamer.session(seed=1, frame_index=5)
    session.temperature = 0.3
    first = session.next_frames(6)
    session.reseed(seed=1, frame_index=5)
    assert np.array_equal(first, session.next_frames(6))
    with pytest.raises(dreamvid.UsageError):
        session.temperature = 0


def test_the_traced_step_dreams_what_the_model_dreams_bit_for_bit(dreamer):
    """On the CPU the map model steps through its TorchScript trace: the same latents at any temperature, from a
    source frame's state or from none; a batch of dreams, which it was not traced for, steps through the model."""
    traced, spread = dreamer.stepper, dreamer.config.rnn.decode_spread
    assert isinstance(traced, TracedStep)
    session = dreamer.session(seed=2)

    def both(z, state, temperature):
        return [model.rollout(z, state, 12, temperature, torch.Generator().manual_seed(7), spread)
                for model in (dreamer.rnn, traced)]

    for z, state, temperature in ((session.z, session.state, 0.5), (session.z, None, 1.2),
                                  (session.z.repeat(2, 1, 1, 1), None, 1.0)):
        (shown, last, (h, c)), (shown_t, last_t, (h_t, c_t)) = both(z, state, temperature)
        assert torch.equal(shown, shown_t) and torch.equal(last, last_t)
        assert torch.equal(h, h_t) and torch.equal(c, c_t)


def test_long_streamed_dream_keeps_memory_flat(dreamer):
    process = psutil.Process(os.getpid())
    dream = dreamer.dream(frames=6400, seed=0)
    rss = []
    for index, batch in enumerate(dream.batches()):
        if index in (20, len(dream) // 64 - 1):
            rss.append(process.memory_info().rss)
    assert rss[1] - rss[0] < 10 * 2 ** 20, f"RSS grew {(rss[1] - rss[0]) / 2 ** 20:.1f} MB over 5,000 frames"


def test_dream_saves_h264_with_the_default_upscale(dreamer, tmp_path):
    path = dreamer.dream(frames=12, seed=0).save(tmp_path / "dream.mp4", progress=False)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    assert len(frames) == 12 and frames[0].width == 256 and stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"


def test_a_saved_dream_holds_the_frames_the_iterated_dream_shows(dreamer, tmp_path):
    # Saving gives the encoder a core of its own (fewer torch threads): the dream itself must not change.
    shown = np.stack(list(dreamer.dream(frames=70, seed=5)))
    folder = dreamer.dream(frames=70, seed=5).save(tmp_path / "frames", upscale=1, progress=False)
    saved = []
    for path in sorted(folder.iterdir()):
        with av.open(str(path)) as container:
            saved.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
    assert np.array_equal(np.stack(saved), shown)


@pytest.mark.parametrize("where", ["dreaming", "decoding"])
def test_a_dream_stopped_while_saving_leaves_no_file(dreamer, tmp_path, monkeypatch, where):
    # Ctrl-C lands on the main thread, which steps the dream model; a failure while decoding, on the worker.
    calls = []

    def fails_at_the_third(function, error):
        def wrapped(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise error
            return function(*args, **kwargs)
        return wrapped

    dream = dreamer.dream(frames=640, seed=0)
    if where == "dreaming":
        monkeypatch.setattr(dream.session, "next_latents", fails_at_the_third(dream.session.next_latents,
                                                                             KeyboardInterrupt()))
    else:
        monkeypatch.setattr(dreamer, "decode", fails_at_the_third(dreamer.decode, RuntimeError("decoder broke")))
    with pytest.raises(KeyboardInterrupt if where == "dreaming" else RuntimeError):
        dream.save(tmp_path / "dream.mp4", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_gets_a_core_and_the_threads_come_back():
    threads = torch.get_num_threads()
    with pytest.raises(KeyboardInterrupt):
        with core_for_a_worker():
            assert torch.get_num_threads() == max(1, threads - 1)
            raise KeyboardInterrupt
    assert torch.get_num_threads() == threads


def test_dream_can_be_primed_by_a_clip_or_a_source_frame(cli_run, dreamer, tmp_path):
    by_clip = np.stack(list(dreamer.dream(frames=10, seed=0, prime=cli_run.clip)))
    by_frame = np.stack(list(dreamer.dream(frames=10, seed=0, prime_frame=40)))
    maps = dreamer.latents["mu"]
    other = int((maps[:40] != maps[40]).flatten(1).sum(1).argmax())   # a frame the VAE draws differently
    by_other_frame = np.stack(list(dreamer.dream(frames=10, seed=0, prime_frame=other)))
    assert by_clip.shape == by_frame.shape == (10, 32, 32, 3)
    assert not np.array_equal(by_frame, by_other_frame)
    assert main(["dream", str(cli_run.path), "--frames", "8", "--prime", str(cli_run.clip), "-o",
                 str(tmp_path / "p.mp4"), "--quiet", "--device", "cpu"]) == 0
    assert main(["dream", str(cli_run.path), "--frames", "8", "--prime-frame", "100000", "-o",
                 str(tmp_path / "q.mp4"), "--quiet"]) == 2


def test_a_runs_decode_spread_changes_its_frames_not_its_course(cli_run, tmp_path):
    # A vector dream shows each latent with part of its spread but feeds back the whole sample.
    dreamvid.train(cli_run.clip, tmp_path / "run", preset="tiny-vector", vae_epochs=1, rnn_epochs=1, progress=False,
                   device="cpu")
    dreamer = dreamvid.load(tmp_path / "run", device="cpu")
    shown = {}
    for spread in (1.0, 0.0):
        dreamer.config.rnn.decode_spread = spread
        session = dreamer.session(seed=3)
        shown[spread] = (session.next_frames(16), session.z.clone())
    assert torch.equal(shown[1.0][1], shown[0.0][1])
    assert not np.array_equal(shown[1.0][0], shown[0.0][0])


def test_a_reprojected_dream_feeds_back_the_vaes_own_latents(cli_run):
    dreamer = dreamvid.load(cli_run.path, device="cpu")
    seen = []
    real = dreamer.reproject

    def recording(z: torch.Tensor) -> torch.Tensor:
        seen.append((z, real(z)))
        return seen[-1][1]

    dreamer.reproject = recording
    session = dreamer.session(seed=3, reproject=True)
    frames = session.next_frames(12)
    assert len(seen) == 12
    assert torch.equal(session.z, seen[-1][1])  # what is fed back is the re-projection of the sample
    torch.testing.assert_close(seen[-1][1], dreamer.vae.encode(dreamer.vae.decode(seen[-1][0]))[0])
    plain = dreamer.session(seed=3).next_frames(12)
    assert frames.shape == plain.shape and not np.array_equal(frames, plain)


@pytest.mark.parametrize("preset", ["default", "worldmodels", "classic"])
def test_a_run_written_by_0_1_0_loads_and_dreams(tmp_path, preset):
    # What dreamvid 0.1.0 left in a run folder: config.json with every retired field at its default, and weights
    # under the names it gave them (tests/test_models.py checks those names against 0.1.0's).
    config = make_config(vector_default() if preset == "default" else preset, fps=10)
    run = RunDir(tmp_path / "run").create()
    run.config_path.write_text(json.dumps(old_style_config(config)))
    vae = build_vae(config.vae)
    run.save_weights("vae", vae)
    run.save_weights("rnn", build_rnn(config.rnn, vae))
    mu = torch.randn(60, config.vae.z_dim)
    run.save_latents({"mu": mu, "logvar": torch.zeros_like(mu), "sequences": torch.tensor([[0, 60]]),
                      "train": torch.tensor([[0, 54]]), "val": torch.tensor([[54, 60]])})
    dreamer = dreamvid.load(run.path, device="cpu")
    assert dreamer.config.rnn == config.rnn and dreamer.config.version == "0.1.0"
    frames = np.stack(list(dreamer.dream(frames=4, seed=0)))
    assert frames.shape == (4, config.vae.size, config.vae.size, 3)
