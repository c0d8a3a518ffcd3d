"""dreamvid.models: shapes, losses, stepping, sampling, and the weight names run folders hold."""
from __future__ import annotations

import hashlib
import json

import pytest
from dataclasses import replace
import torch

from conftest import vector_default
from dreamvid.config import PRESETS, RNNConfig, VAEConfig
from dreamvid.models import StepBatch, build_rnn, build_vae, gaussian_kl

# sha256 of the sorted (weight name, shape) pairs of each preset's models in dreamvid 0.1.0 (commit
# 7160bca): a run trained there loads here only if these stay the same. `default` was the vector recipe then.
WEIGHTS_0_1_0 = {"default": ("d43308c780af720f", "933218349cd590eb"),
                 "worldmodels": ("d43308c780af720f", "0f51135ef99a616f"),
                 "classic": ("ba7e5d443b01ccf7", "cfc24cdcc15ea99f")}
CONFIGS_0_1_0 = {"default": vector_default, "worldmodels": PRESETS["worldmodels"], "classic": PRESETS["classic"]}


def _names_and_shapes(module: torch.nn.Module) -> str:
    pairs = sorted((name, list(value.shape)) for name, value in module.state_dict().items())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


@pytest.mark.parametrize("preset", list(WEIGHTS_0_1_0))
def test_weight_names_and_shapes_are_those_of_0_1_0(preset):
    config = CONFIGS_0_1_0[preset]()
    vae = build_vae(config.vae)
    rnn = build_rnn(config.rnn, vae.latent_shape)
    assert (_names_and_shapes(vae), _names_and_shapes(rnn)) == WEIGHTS_0_1_0[preset]
    assert any(name.startswith(f"{config.rnn.cell}.") for name in rnn.state_dict())


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_conv_vae_shapes_at_every_size(size):
    vae = build_vae(VAEConfig(size=size, z_dim=16, channels=(8, 8, 8, 8)))
    images = torch.rand(2, 3, size, size)
    logits, mu, logvar = vae(images)
    assert logits.shape == images.shape and mu.shape == logvar.shape == (2, *vae.latent_shape) == (2, 16)
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


@pytest.mark.parametrize("reconstruction", ["mse", "bce"])
def test_vae_loss_is_the_reconstruction_plus_the_kl_above_free_bits(reconstruction):
    vae = build_vae(VAEConfig(size=32, z_dim=4, channels=(8, 8, 8), free_bits=0.5, reconstruction=reconstruction))
    images = torch.rand(2, 3, 32, 32)
    total, parts = vae.loss(images, StepBatch(torch.Generator().manual_seed(0)))
    logits, mu, logvar = vae(images, StepBatch(torch.Generator().manual_seed(0)))
    kl = gaussian_kl(mu, logvar).sum(1).mean()
    torch.testing.assert_close(parts["kl"], kl)
    torch.testing.assert_close(total, vae.reconstruction_loss(images, logits).mean() + torch.clamp(kl, min=0.5 * 4))
    assert (vae.reconstruction_loss(images, torch.logit(images.clamp(1e-4, 1 - 1e-4))) <
            vae.reconstruction_loss(images, torch.zeros_like(images))).all()


def test_rnn_loss_and_held_out_nll_score_each_next_latent():
    torch.manual_seed(0)
    rnn = build_rnn(RNNConfig(kind="mdn", hidden=16, gaussians=3), 4).eval()
    latents = torch.randn(10, 4)
    params, _ = rnn(latents[None, :-1])
    per_step = rnn.nll(params, latents[None, 1:])[0]
    torch.testing.assert_close(rnn.loss(latents[None, :-1], latents[None, 1:]), per_step.mean())
    torch.testing.assert_close(rnn.sequence_nll(latents, 6), per_step[5:])  # latents 6-9, each from all before
    torch.testing.assert_close(rnn.sequence_nll(latents, 6, chunk=3), per_step[5:])  # the state carried over


@pytest.mark.parametrize("cell", ["lstm", "lnlstm"])
def test_single_steps_match_the_sequence_forward(cell):
    # Dreaming runs one step at a time; training and validation run the whole module over a sequence.
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


def test_rnn_dropout_masks_only_while_training_and_repeats_for_a_generator():
    rnn = build_rnn(RNNConfig(kind="mdn", hidden=32, gaussians=3, dropout=0.5), 4)
    z = torch.randn(3, 6, 4)
    rnn.train()
    first, again = (rnn(z, batch=StepBatch(torch.Generator().manual_seed(7)))[0][1] for _ in range(2))
    other = rnn(z, batch=StepBatch(torch.Generator().manual_seed(8)))[0][1]
    assert torch.equal(first, again) and not torch.equal(first, other)
    rnn.eval()
    assert torch.equal(rnn(z)[0][1], rnn(z, batch=StepBatch(torch.Generator().manual_seed(8)))[0][1])
    assert not torch.equal(rnn(z)[0][1], first)


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


# --- the spatial family ----------------------------------------------------------------------------------

def _spatial(size: int = 32):
    config = PRESETS["tiny"]()
    return build_vae(replace(config.vae, size=size)), config


def test_fsq_rounds_every_channel_to_its_levels_and_back():
    from dreamvid.models.spatial import FSQ
    fsq = FSQ((8, 5, 3))
    values = fsq(torch.randn(4, 3, 6, 6) * 3)
    indices = fsq.indices(values)
    for channel, levels in enumerate((8, 5, 3)):
        assert set(indices[:, channel].unique().tolist()) <= set(range(levels))
    assert torch.equal(fsq.values(indices), values)
    assert values.abs().max() <= 1
    assert fsq.indices(torch.full((1, 3, 1, 1), 7.0)).flatten().tolist() == [7, 4, 2]  # far values clamp


def test_fsq_codes_number_every_combination_of_levels():
    from dreamvid.models.spatial import FSQ
    fsq = FSQ((5, 3))
    values = fsq.values(torch.stack(torch.meshgrid(torch.arange(5), torch.arange(3), indexing="ij")).view(1, 2, 5, 3))
    codes = fsq.code(values)
    assert fsq.codes == 15 and sorted(codes.flatten().tolist()) == list(range(15))
    assert torch.equal(fsq.code_values(codes), values)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_spatial_vae_maps_every_4x4_patch_to_a_cell(size):
    vae, _ = _spatial(size)
    images = torch.rand(2, 3, size, size)
    z, logvar = vae.encode(images)
    assert logvar is None and z.shape == (2, *vae.latent_shape) == (2, 2, size // 4, size // 4)
    assert vae.decode(z).shape == images.shape
    total, parts = vae.loss(images)
    total.backward()
    assert torch.isfinite(total) and "psnr" in parts


def test_a_spatial_cell_draws_only_its_neighbourhood():
    vae, _ = _spatial(64)
    z = vae.encode(torch.rand(1, 3, 64, 64))[0]
    moved = z.clone()
    moved[0, :, 0, 0] = torch.where(z[0, :, 0, 0] > 0, -1.0, 1.0)  # another code in the top-left cell
    changed = (vae.decode(moved) - vae.decode(z)).abs().sum(1)[0] > 1e-6
    rows, cols = changed.nonzero(as_tuple=True)
    assert changed.any() and rows.max() < 32 and cols.max() < 32  # the top-left corner, not the whole frame


def test_a_cells_code_comes_from_its_own_pixels_alone():
    # A part of the frame that does not change keeps its codes exactly, whatever moves next to it.
    vae, _ = _spatial(32)
    images = torch.rand(1, 3, 32, 32)
    changed = images.clone()
    changed[:, :, 4:8, 8:12] = torch.rand(1, 3, 4, 4)   # the pixels of cell (1, 2) only
    differs = (vae.encode(changed)[0] != vae.encode(images)[0]).any(1)[0]
    assert not differs[torch.arange(8) != 1].any() and not differs[1, torch.arange(8) != 2].any()


def _map_dreamer():
    vae, config = _spatial(32)
    return build_rnn(config.rnn, vae), vae


def test_map_dreamer_trains_its_summary_motion_and_renderer_at_once():
    rnn, vae = _map_dreamer()
    maps = vae.encode(torch.rand(6, 3, 32, 32))[0].detach().view(2, 3, *vae.latent_shape)
    loss = rnn.loss(maps[:, :-1], maps[:, 1:], StepBatch(torch.Generator().manual_seed(0)))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in rnn.parameters())


def test_map_dreams_are_codes_and_repeat_for_a_seed():
    rnn, vae = _map_dreamer()
    rnn.eval()
    start = vae.encode(torch.rand(1, 3, 32, 32))[0]
    dreams = [rnn.rollout(start, None, 5, 1.0, torch.Generator().manual_seed(4))[0] for _ in range(2)]
    assert dreams[0].shape == (1, 5, *vae.latent_shape) and torch.equal(*dreams)
    assert torch.equal(rnn.fsq.values(rnn.fsq.indices(dreams[0])), dreams[0])  # every cell one of its levels
    other = rnn.rollout(start, None, 5, 1.0, torch.Generator().manual_seed(5))[0]
    assert not torch.equal(dreams[0], other)


def test_map_renderer_sees_the_whole_map_and_the_layout_everywhere():
    # A change in one corner of the conditioning map reaches the far corner's prediction (global motion, a
    # scrolling road or a turning camera, is reachable), and the layout g reaches every cell.
    rnn, vae = _map_dreamer()
    renderer = rnn.renderer
    z = vae.encode(torch.rand(1, 3, 32, 32))[0]
    moved = z.clone()
    moved[0, :, 0, 0] = torch.where(z[0, :, 0, 0] > 0, -1.0, 1.0)  # another code in the top-left cell
    g, other_g = torch.zeros(1, rnn.config.global_size), torch.ones(1, rnn.config.global_size)

    def log_probs(m, layout):
        return renderer.log_probs(renderer.head_start(renderer.features(m, layout)), torch.zeros_like(m),
                                  torch.ones_like(m[:, :1]))

    assert not torch.equal(log_probs(z, g)[..., -1, -1], log_probs(moved, g)[..., -1, -1])
    assert (log_probs(z, g) != log_probs(z, other_g)).any(1).all()


def test_map_nll_and_mean_fit_the_evaluation_interface():
    rnn, vae = _map_dreamer()
    z = vae.encode(torch.rand(3, 3, 32, 32))[0].detach()
    params, state = rnn.step(z)
    assert rnn.nll(params, z).shape == (3,) and rnn.mean(params).shape == z.shape
    sequence = torch.cat([z, z])
    assert rnn.sequence_nll(sequence, 2).shape == (4,)
