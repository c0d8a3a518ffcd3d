"""Training and dreaming end to end on tiny synthetic clips: shapes, round trips, determinism, resume, memory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import psutil
import pytest
import torch

import dreamvid
from dreamvid import checkpoint
from dreamvid.config import PRESETS, RNNConfig, VAEConfig, make_config
from dreamvid.errors import Interrupted
from dreamvid.models import build_rnn, build_vae
from dreamvid.training import _window_starts, minimum_frames
from synthetic import make_video

TINY = dict(preset="tiny", progress=False, device="cpu")  # determinism is promised on CPU


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=90, width=48, height=48)


@pytest.fixture(scope="module")
def tiny_run(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    dreamvid.train(clip, out, vae_epochs=2, rnn_epochs=2, **TINY)
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {**{f"vae.{k}": v for k, v in checkpoint.load_tensors(run / "vae.safetensors").items()},
            **{f"rnn.{k}": v for k, v in checkpoint.load_tensors(run / "rnn.safetensors").items()}}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_conv_vae_shapes_at_every_size(size):
    vae = build_vae(VAEConfig(size=size, z_dim=16, channels=(8, 8, 8, 8)))
    images = torch.rand(2, 3, size, size)
    logits, mu, logvar = vae(images)
    assert logits.shape == images.shape and mu.shape == logvar.shape == (2, 16)
    assert vae.decode(mu).shape == images.shape


def test_dense_vae_and_both_rnns_shapes():
    config = PRESETS["classic"]()
    vae = build_vae(config.vae)
    logits, mu, _ = vae(torch.rand(2, 3, 128, 128))
    assert logits.shape == (2, 3, 128, 128) and mu.shape == (2, 64)
    for rnn_config in (RNNConfig(kind="mdn", hidden=16, gaussians=5), RNNConfig(kind="regression", hidden=16,
                                                                                  layers=2, feed_noise=0.1)):
        rnn = build_rnn(rnn_config, 6)
        params, _ = rnn(torch.randn(3, 7, 6))
        assert rnn.nll(params, torch.randn(3, 7, 6)).shape == (3, 7)
        assert rnn.mean(params).shape == rnn.sample(params, 1.0).shape == (3, 7, 6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "lnlstm", "transformer"])
def test_single_steps_match_the_sequence_forward(cell):
    # Dreaming runs one step at a time; training and validation run the whole module over a sequence. The
    # transformer's 4-latent context is shorter than the sequence, so its sliding windows are checked too.
    torch.manual_seed(0)
    rnn = build_rnn(RNNConfig(kind="mdn", cell=cell, hidden=16, layers=2, gaussians=3, seq_len=4), 5).eval()
    z = torch.randn(2, 9, 5)
    whole, _ = rnn(z)
    state, steps = None, []
    for t in range(z.shape[1]):
        params, state = rnn.step(z[:, t], state)
        steps.append(params)
    for index, part in enumerate(whole):
        torch.testing.assert_close(torch.stack([p[index] for p in steps], 1), part)


def test_transformer_sees_only_its_context_and_the_past():
    torch.manual_seed(0)
    rnn = build_rnn(RNNConfig(kind="mdn", cell="transformer", hidden=16, layers=2, gaussians=3, seq_len=4), 5).eval()
    z = torch.randn(1, 10, 5)
    changed = z.clone()
    changed[:, 5] += 1.0
    before, after = rnn(z)[0][1], rnn(changed)[0][1]
    moved = (before - after).abs().flatten(2).amax(-1)[0] > 1e-6
    # Position 5 reaches the outputs at 5-8 (each window of 4 that holds it), none before and none after.
    assert moved.tolist() == [False] * 5 + [True] * 4 + [False]


@pytest.mark.parametrize("cell", ["lnlstm", "transformer"])
def test_new_cells_train_save_load_and_dream(clip, tmp_path, cell):
    from dataclasses import replace
    tiny = PRESETS["tiny"]()
    config = replace(tiny, rnn=replace(tiny.rnn, cell=cell, dropout=0.3))
    dreamvid.train(clip, tmp_path / "run", vae_epochs=1, rnn_epochs=2, **{**TINY, "preset": config})
    assert any(key.startswith(f"{cell}.") for key in checkpoint.load_tensors(tmp_path / "run" / "rnn.safetensors"))
    frames = np.asarray(list(dreamvid.load(tmp_path / "run", device="cpu").dream(frames=40, seed=1)))
    assert frames.shape == (40, 32, 32, 3) and frames.std(0).mean() > 0


def test_rnn_dropout_masks_only_while_training_and_repeats_for_a_generator():
    rnn = build_rnn(RNNConfig(kind="mdn", hidden=32, gaussians=3, dropout=0.5), 4)
    z = torch.randn(3, 6, 4)
    rnn.train()
    first, again = (rnn(z, generator=torch.Generator().manual_seed(7))[0][1] for _ in range(2))
    other = rnn(z, generator=torch.Generator().manual_seed(8))[0][1]
    assert torch.equal(first, again) and not torch.equal(first, other)
    rnn.eval()
    assert torch.equal(rnn(z)[0][1], rnn(z, generator=torch.Generator().manual_seed(8))[0][1])
    assert not torch.equal(rnn(z)[0][1], first)


@pytest.mark.parametrize("cell", ["gru", "lnlstm"])  # lnlstm: `default`'s cell
def test_cells_with_dropout_resume_to_the_uninterrupted_result(clip, tmp_path, cell):
    from dataclasses import replace
    tiny = PRESETS["tiny"]()
    config = replace(tiny, rnn=replace(tiny.rnn, cell=cell, dropout=0.3))
    dreamvid.train(clip, tmp_path / "whole", vae_epochs=1, rnn_epochs=3, **{**TINY, "preset": config})
    stop, seen = threading.Event(), []

    def interrupt_in_rnn(event):
        if event["stage"] == "rnn":
            seen.append(event)
            if len(seen) == 2:
                stop.set()

    with pytest.raises(Interrupted):
        dreamvid.train(clip, tmp_path / "resumed", vae_epochs=1, rnn_epochs=3, on_event=interrupt_in_rnn, stop=stop,
                       **{**TINY, "preset": config})
    dreamvid.train(out=tmp_path / "resumed", resume=True, progress=False, device="cpu")
    _assert_same_weights(tmp_path / "whole", tmp_path / "resumed")
    assert any(key.startswith(f"{cell}.") for key in checkpoint.load_tensors(tmp_path / "whole" / "rnn.safetensors"))
    frames = dreamvid.load(tmp_path / "resumed", device="cpu").dream(frames=12, seed=1)
    assert np.asarray(list(frames)).shape == (12, 32, 32, 3)


def test_mdn_temperature_shrinks_and_widens_the_spread():
    torch.manual_seed(0)
    rnn = build_rnn(RNNConfig(kind="mdn", hidden=16, gaussians=5), 4)
    params, _ = rnn.step(torch.zeros(1, 4))
    params = tuple(p.expand(4000, *p.shape[1:]) for p in params)
    spread = [rnn.sample(params, t, torch.Generator().manual_seed(1)).std(0).mean().item() for t in (0.1, 1.0, 2.0)]
    assert spread[0] < spread[1] < spread[2]


def test_decode_spread_changes_what_is_shown_never_what_is_fed_back():
    torch.manual_seed(0)
    for config in (RNNConfig(kind="mdn", hidden=16, gaussians=3), RNNConfig(kind="regression", feed_noise=0.1)):
        rnn = build_rnn(config, 4)
        z = torch.randn(2, 4)
        shown = {}
        for spread in (1.0, 0.5, 0.0):
            shown[spread], last, _ = rnn.rollout(z, None, 12, 1.0, torch.Generator().manual_seed(3), spread)
            assert torch.equal(last, shown[1.0][:, -1])  # the fed-back sample, whatever the frames show
        assert not torch.allclose(shown[1.0], shown[0.0])
        torch.testing.assert_close(shown[0.5], (shown[1.0] + shown[0.0]) / 2)
        # With spread 0 each frame is the point its sample was drawn around: for the regression RNN, the
        # prediction from the fed-back history, with none of the feed noise.
        if config.kind == "regression":
            fed = torch.cat([z[:, None], shown[1.0][:, :-1]], 1)
            torch.testing.assert_close(shown[0.0], rnn(fed)[0][0])


def test_rollout_feeds_back_and_shows_what_feedback_makes_of_each_sample():
    torch.manual_seed(0)
    rnn = build_rnn(RNNConfig(kind="regression", feed_noise=0.1), 4)
    z = torch.randn(2, 4)
    halve = lambda sample: sample / 2  # noqa: E731
    plain, _, _ = rnn.rollout(z, None, 10, 1.0, torch.Generator().manual_seed(3))
    shown, last, _ = rnn.rollout(z, None, 10, 1.0, torch.Generator().manual_seed(3), feedback=halve)
    centers, _, _ = rnn.rollout(z, None, 10, 1.0, torch.Generator().manual_seed(3), 0.0, feedback=halve)
    assert torch.equal(last, shown[:, -1])
    torch.testing.assert_close(shown[:, 0], plain[:, 0] / 2)  # the first sample comes from the same history
    assert not torch.allclose(shown[:, 1:], plain[:, 1:] / 2)  # later ones follow the halved history
    fed = torch.cat([z[:, None], shown[:, :-1]], 1)
    torch.testing.assert_close(centers, rnn(fed)[0][0])


def test_open_loop_inputs_are_the_rnns_own_samples_where_replaced():
    from dreamvid.training import with_own_samples
    torch.manual_seed(0)
    rnn = build_rnn(RNNConfig(kind="mdn", hidden=16, gaussians=3), 3)
    inputs = torch.randn(8, 12, 3)
    mixed = with_own_samples(rnn, inputs, 0.5, torch.Generator().manual_seed(5))
    own = rnn.sample(rnn(inputs)[0], 1.0, torch.Generator().manual_seed(5))
    replaced = (mixed != inputs).any(-1)
    assert not replaced[:, 0].any()  # a window's first latent is always the true one
    assert 0.3 < replaced[:, 1:].float().mean() < 0.7
    assert torch.equal(mixed[:, 1:][replaced[:, 1:]], own[:, :-1][replaced[:, 1:]])
    assert torch.equal(mixed[~replaced], inputs[~replaced])


def test_weights_round_trip_gives_identical_outputs(tmp_path):
    vae = build_vae(VAEConfig(size=32, z_dim=8, channels=(8, 8, 8)))
    checkpoint.save_tensors(tmp_path / "vae.safetensors", vae.state_dict())
    again = build_vae(VAEConfig(size=32, z_dim=8, channels=(8, 8, 8)))
    checkpoint.load_weights(again, tmp_path / "vae.safetensors")
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(vae.encode(images)[0], again.encode(images)[0])


def test_run_folder_holds_config_weights_logs_and_previews(tiny_run):
    for name in ("config.json", "vae.safetensors", "rnn.safetensors", "latents.safetensors", "log.jsonl",
                 "previews/reconstruction.png", "previews/dream.png", "previews/losses.png",
                 "state/vae_optimizer.safetensors", "state/rnn_optimizer.safetensors"):
        assert (tiny_run / name).is_file(), name
    log = (tiny_run / "log.jsonl").read_text().splitlines()
    assert sum('"vae"' in line for line in log) == 2 and sum('"rnn"' in line for line in log) == 2
    assert all('"val_loss"' in line for line in log)


def test_loaded_run_dreams_identically_for_a_seed_and_differently_across_seeds(tiny_run):
    a = np.stack(list(dreamvid.load(tiny_run, device="cpu").dream(frames=20, seed=3)))
    b = np.stack(list(dreamvid.load(tiny_run, device="cpu").dream(frames=20, seed=3)))
    c = np.stack(list(dreamvid.load(tiny_run, device="cpu").dream(frames=20, seed=4)))
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_stream_and_session_controls(tiny_run):
    dreamer = dreamvid.load(tiny_run, device="cpu")
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


def test_training_is_deterministic_for_a_seed(clip, tiny_run, tmp_path):
    dreamvid.train(clip, tmp_path / "again", vae_epochs=2, rnn_epochs=2, **TINY)
    _assert_same_weights(tiny_run, tmp_path / "again")


@pytest.mark.parametrize("stage, after_events", [("vae", 5), ("rnn", 3)])
def test_resume_after_interrupt_equals_an_uninterrupted_run(clip, tiny_run, tmp_path, stage, after_events):
    stop, seen = threading.Event(), []

    def interrupt_in_stage(event):
        if event["stage"] == stage:
            seen.append(event)
            if len(seen) == after_events:
                stop.set()

    out = tmp_path / "run"
    with pytest.raises(Interrupted, match="--resume"):
        dreamvid.train(clip, out, vae_epochs=2, rnn_epochs=2, on_event=interrupt_in_stage, stop=stop, **TINY)
    dreamvid.train(out=out, resume=True, progress=False, device="cpu")
    _assert_same_weights(tiny_run, out)


def test_ctrl_c_saves_and_prints_the_resume_command(clip, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "dreamvid", "train", str(clip), "-o", str(out), "--preset",
                                "tiny", "--vae-epochs", "400", "--rnn-epochs", "1", "--quiet"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "state" / "train_state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"dreamvid train -o {out} --resume" in stderr and "Traceback" not in stderr
    assert (out / "vae.safetensors").is_file() and (out / "state" / "vae_optimizer.safetensors").is_file()


def test_several_sources_stay_separate_sequences(tmp_path):
    a = make_video(tmp_path / "a.mp4", n_frames=60, width=32, height=32, seed=1)
    b = make_video(tmp_path / "b.mkv", n_frames=50, width=40, height=32, seed=2)
    dreamvid.train([a, b], tmp_path / "run", vae_epochs=1, rnn_epochs=1, **TINY)
    dreamer = dreamvid.load(tmp_path / "run", device="cpu")
    sequences = dreamer.latents["sequences"].tolist()
    assert sequences == [[0, 60], [60, 110]]
    train_ranges = [tuple(r) for r in dreamer.latents["train"].tolist()]
    seq_len = dreamer.config.rnn.seq_len
    for offset in range(seq_len):
        for start in _window_starts(train_ranges, seq_len, offset):
            assert any(a <= start and start + seq_len + 1 <= b for a, b in train_ranges)


def test_minimum_frames_leaves_a_full_window_and_a_held_out_tail():
    for seq_len in (8, 32, 50):
        n = minimum_frames(seq_len)
        held_out = -(-n // 10)
        assert n - held_out >= seq_len + 1 and held_out >= 2
        assert (n - 1) - (-(-(n - 1) // 10)) < seq_len + 1 or -(-(n - 1) // 10) < 2


def test_time_budget_is_respected(clip, tmp_path):
    started = time.monotonic()
    dreamvid.train(clip, tmp_path / "run", minutes=0.1, **TINY)
    assert time.monotonic() - started < 6 + 20  # 6 s budget; the rest is decoding, encoding and saving
    assert (tmp_path / "run" / "rnn.safetensors").is_file()


def test_long_streamed_dream_keeps_memory_flat(tiny_run, tmp_path):
    dreamer = dreamvid.load(tiny_run, device="cpu")
    process = psutil.Process(os.getpid())
    dream = dreamer.dream(frames=12000, seed=0)
    rss = []
    for index, batch in enumerate(dream.batches()):
        if index in (20, len(dream) // 64 - 1):
            rss.append(process.memory_info().rss)
    assert rss[1] - rss[0] < 20 * 2 ** 20, f"RSS grew {(rss[1] - rss[0]) / 2 ** 20:.1f} MB over 10,000 frames"


def test_dream_saves_every_format_with_the_default_upscale(tiny_run, tmp_path):
    dream = dreamvid.load(tiny_run, device="cpu").dream(frames=12, seed=0)
    path = dream.save(tmp_path / "dream.mp4", progress=False)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    assert len(frames) == 12 and frames[0].width == 256 and stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"


def test_make_config_applies_size_to_model_and_data():
    config = make_config("worldmodels", size=128)
    assert config.vae.size == config.data.size == 128
    assert config.vae.free_bits == 0.5 and config.rnn.gaussians == 5


def test_dream_can_be_primed_by_a_clip_or_a_source_frame(tiny_run, clip, tmp_path):
    from dreamvid.cli import main
    dreamer = dreamvid.load(tiny_run, device="cpu")
    by_clip = np.stack(list(dreamer.dream(frames=10, seed=0, prime=clip)))
    by_frame = np.stack(list(dreamer.dream(frames=10, seed=0, prime_frame=40)))
    by_other_frame = np.stack(list(dreamer.dream(frames=10, seed=0, prime_frame=5)))
    assert by_clip.shape == by_frame.shape == (10, 32, 32, 3)
    assert not np.array_equal(by_frame, by_other_frame)
    assert main(["dream", str(tiny_run), "--frames", "8", "--prime", str(clip), "-o", str(tmp_path / "p.mp4"),
                 "--quiet", "--device", "cpu"]) == 0
    assert main(["dream", str(tiny_run), "--frames", "8", "--prime-frame", "100000", "-o",
                 str(tmp_path / "q.mp4"), "--quiet"]) == 2


def test_gradient_difference_charges_a_smeared_edge_more_than_the_pixel_loss_does():
    from dreamvid.models import gradient_difference
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1
    smeared = edge.clone()
    smeared[..., 7], smeared[..., 8] = 1 / 3, 2 / 3
    assert gradient_difference(edge, edge).item() == 0
    assert gradient_difference(smeared, edge).item() > 2 * ((smeared - edge) ** 2).sum().item()


def test_ssim_loss_charges_blur_more_than_a_brightness_shift_of_equal_squared_error():
    from dreamvid.models import ssim_loss
    torch.manual_seed(0)
    texture = torch.rand(2, 3, 32, 32) * 0.6 + 0.2
    blurred = torch.nn.functional.avg_pool2d(texture, 3, 1, 1, count_include_pad=False)
    shift = ((blurred - texture) ** 2).mean().sqrt()
    brighter = texture + shift
    torch.testing.assert_close(((brighter - texture) ** 2).mean(), ((blurred - texture) ** 2).mean())
    assert ssim_loss(texture, texture).item() < 1e-3
    assert ssim_loss(blurred, texture).item() > 5 * ssim_loss(brighter, texture).item()


def test_edge_weights_lift_a_thin_line_above_its_flat_background():
    from dreamvid.models import edge_weights
    flat = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(edge_weights(flat, 3.0), torch.ones(1, 1, 16, 16), atol=1e-3, rtol=0)
    line = flat.clone()
    line[..., 8] = 0.9
    weights = edge_weights(line, 3.0)
    assert weights.shape == (1, 1, 16, 16)
    assert weights[..., 8].min() > 2 * weights[..., 2].max()
    assert weights[..., 2].max() < 1 + 1e-3


def test_coords_decoder_sees_each_pixel_position_and_keeps_the_output_shape():
    from dreamvid.config import VAEConfig
    from dreamvid.models import AddCoords
    with_coords = AddCoords()(torch.zeros(2, 5, 4, 6))
    assert with_coords.shape == (2, 7, 4, 6)
    assert with_coords[0, 5, :, 0].tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1])
    assert with_coords[0, 6, 0, :].tolist() == pytest.approx([-1, -0.6, -0.2, 0.2, 0.6, 1])
    vae = build_vae(VAEConfig(size=32, z_dim=4, channels=(8, 8, 8), coords=True))
    assert vae.decode(torch.zeros(3, 4)).shape == (3, 3, 32, 32)
    assert sum(isinstance(m, AddCoords) for m in vae.decoder) == 3


def test_grid_latents_are_local_cells_each_decoded_into_its_own_patch():
    from dreamvid.config import VAEConfig
    vae = build_vae(VAEConfig(size=32, z_dim=32, channels=(8, 8, 8), grid=4))
    mu, logvar = vae.encode(torch.rand(2, 3, 32, 32))
    assert mu.shape == logvar.shape == (2, 32)
    z = torch.randn(1, 32)
    moved = z.clone()
    moved.view(1, 2, 4, 4)[0, :, 0, 0] += 3.0  # the top-left cell, in both of its channels
    change = (vae.decode(moved) - vae.decode(z)).abs().sum(1)[0]
    # The 3x3 convolution over the cells reaches the next cell (pixels 8-15), each k4 s2 upsampling a little more.
    assert change[:8, :8].sum() > 0
    assert change[24:, :].max() == 0 and change[:, 24:].max() == 0
    flat = build_vae(VAEConfig(size=32, z_dim=32, channels=(8, 8, 8)))
    z = torch.randn(1, 32)
    moved = z.clone()
    moved[0, :2] += 3.0
    assert (flat.decode(moved) - flat.decode(z)).abs()[0, :, 24:, 24:].max() > 0
    with pytest.raises(ValueError, match="grid"):
        VAEConfig(z_dim=32, grid=3)


def test_kl_annealing_scales_only_the_kl_term():
    from dreamvid.config import VAEConfig
    vae = build_vae(VAEConfig(size=32, z_dim=4, channels=(8, 8, 8), free_bits=0.5))
    images = torch.rand(2, 3, 32, 32)
    logits, mu, logvar = vae(images, torch.Generator().manual_seed(0))
    full, reconstruction, kl = vae.loss(images, logits, mu, logvar)
    annealed, _, _ = vae.loss(images, logits, mu, logvar, kl_scale=0.25)
    penalty = max(kl.item(), 0.5 * 4)
    torch.testing.assert_close(full.item(), reconstruction.item() + penalty)
    torch.testing.assert_close(annealed.item(), reconstruction.item() + 0.25 * penalty)
    with pytest.raises(ValueError, match="kl_anneal"):
        VAEConfig(kl_anneal=1.5)


def test_rnn_trained_on_latent_means_keeps_the_vae_and_changes_the_rnn(clip, tiny_run, tmp_path):
    from dataclasses import replace
    tiny = PRESETS["tiny"]()
    config = replace(tiny, rnn=replace(tiny.rnn, latents="means"))
    dreamvid.train(clip, tmp_path / "means", vae_epochs=2, rnn_epochs=2, **{**TINY, "preset": config})
    vae_a, vae_b = (checkpoint.load_tensors(run / "vae.safetensors") for run in (tiny_run, tmp_path / "means"))
    assert all(torch.equal(vae_a[key], vae_b[key]) for key in vae_a)
    rnn_a, rnn_b = (checkpoint.load_tensors(run / "rnn.safetensors") for run in (tiny_run, tmp_path / "means"))
    assert not all(torch.equal(rnn_a[key], rnn_b[key]) for key in rnn_a)
    assert dreamvid.load(tmp_path / "means").config.rnn.latents == "means"


def _rnn_val_losses(run: Path) -> list[float]:
    import json
    return [json.loads(line)["val_loss"] for line in (run / "log.jsonl").read_text().splitlines()
            if '"rnn"' in line]


def test_decoder_tuning_changes_the_decoder_and_leaves_the_encoder_and_latents_as_they_were(clip, tiny_run,
                                                                                          tmp_path):
    from dataclasses import replace
    tiny = PRESETS["tiny"]()
    config = replace(tiny, vae=replace(tiny.vae, decoder_tuning=0.5))  # epochs 0-1 as tiny_run's, 2-3 decoder only
    dreamvid.train(clip, tmp_path / "tuned", vae_epochs=4, rnn_epochs=2, **{**TINY, "preset": config})
    plain, tuned = (checkpoint.load_tensors(run / "vae.safetensors") for run in (tiny_run, tmp_path / "tuned"))
    encoder = [key for key in plain if key.startswith(("encoder.", "to_mu.", "to_logvar."))]
    decoder = [key for key in plain if key not in encoder]
    assert encoder and decoder
    assert all(torch.equal(plain[key], tuned[key]) for key in encoder)
    assert not any(torch.equal(plain[key], tuned[key]) for key in decoder)
    latents = [checkpoint.load_tensors(run / "latents.safetensors") for run in (tiny_run, tmp_path / "tuned")]
    assert torch.equal(latents[0]["mu"], latents[1]["mu"])
    with pytest.raises(ValueError, match="decoder_tuning"):
        VAEConfig(decoder_tuning=1.0)


def test_a_decoder_step_draws_frames_closer_from_their_means_and_leaves_the_encoder_alone():
    from dreamvid.training import decoder_train_step
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(size=32, z_dim=4, channels=(8, 8, 8)))
    images = torch.rand(8, 3, 1, 1).expand(8, 3, 32, 32).contiguous()  # flat colours: learnable in a few steps
    encoder = {key: value.clone() for key, value in vae.state_dict().items() if key.startswith("encoder.")}

    def loss_from_means() -> float:
        with torch.no_grad():
            return vae.reconstruction_loss(images, vae.decode_logits(vae.encode(images)[0])).item()

    before = loss_from_means()
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for _ in range(100):
        decoder_train_step(vae, optimizer, images, bf16=False)
    assert loss_from_means() < 0.8 * before
    assert all(torch.equal(vae.state_dict()[key], value) for key, value in encoder.items())


def test_keep_best_ends_with_the_lowest_validation_epoch_and_survives_resume(clip, tmp_path):
    from dataclasses import replace
    tiny = PRESETS["tiny"]()
    # A learning rate this high makes the held-out NLL bounce, so the best epoch is not the last one.
    bouncy = replace(tiny, rnn=replace(tiny.rnn, lr=0.05))
    best = replace(bouncy, rnn=replace(bouncy.rnn, keep_best=True))
    dreamvid.train(clip, tmp_path / "last", vae_epochs=1, rnn_epochs=8, **{**TINY, "preset": bouncy})
    dreamvid.train(clip, tmp_path / "best", vae_epochs=1, rnn_epochs=8, **{**TINY, "preset": best})
    losses = _rnn_val_losses(tmp_path / "best")
    assert losses == _rnn_val_losses(tmp_path / "last")
    best_epoch = int(np.argmin(losses))
    assert best_epoch < len(losses) - 1, losses
    # Training the same run only up to the best epoch gives exactly the weights keep_best ended with.
    dreamvid.train(clip, tmp_path / "upto", vae_epochs=1, rnn_epochs=best_epoch + 1,
                   **{**TINY, "preset": bouncy})
    _assert_same_weights(tmp_path / "best", tmp_path / "upto")
    assert not all(torch.equal(a, b) for a, b in zip(_weights(tmp_path / "best").values(),
                                                    _weights(tmp_path / "last").values()))

    # Interrupted after the best epoch and resumed: the best weights were saved and still win.
    stop = threading.Event()

    def interrupt_late(event):
        if event["stage"] == "rnn" and event["epoch"] == len(losses) - 2:
            stop.set()

    with pytest.raises(Interrupted):
        dreamvid.train(clip, tmp_path / "resumed", vae_epochs=1, rnn_epochs=8, on_event=interrupt_late, stop=stop,
                       **{**TINY, "preset": best})
    dreamvid.train(out=tmp_path / "resumed", resume=True, progress=False, device="cpu")
    _assert_same_weights(tmp_path / "best", tmp_path / "resumed")


def test_a_runs_decode_spread_changes_its_frames_not_its_course(tiny_run):
    dreamer = dreamvid.load(tiny_run, device="cpu")
    shown = {}
    for spread in (1.0, 0.0):
        dreamer.config.rnn.decode_spread = spread
        session = dreamer.session(seed=3)
        shown[spread] = (session.next_frames(16), session.z.clone())
    assert torch.equal(shown[1.0][1], shown[0.0][1])
    assert not np.array_equal(shown[1.0][0], shown[0.0][0])


def test_a_reprojected_dream_feeds_back_the_vaes_own_latents(tiny_run):
    dreamer = dreamvid.load(tiny_run, device="cpu")
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


def test_cosine_schedule_takes_the_vae_learning_rate_to_nearly_zero(clip, tmp_path):
    import json
    from dataclasses import replace
    from safetensors import safe_open
    tiny = PRESETS["tiny"]()
    config = replace(tiny, vae=replace(tiny.vae, lr_schedule="cosine"))
    dreamvid.train(clip, tmp_path / "run", vae_epochs=4, rnn_epochs=1, **{**TINY, "preset": config})
    with safe_open(str(tmp_path / "run" / "state" / "vae_optimizer.safetensors"), framework="pt") as handle:
        last_lr = json.loads(handle.metadata()["param_groups"])[0]["lr"]
    assert 0 < last_lr < 0.05 * tiny.vae.lr
