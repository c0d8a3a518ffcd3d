"""dreamvid.config: presets, make_config, config.json and the settings earlier versions had."""
from __future__ import annotations

import inspect
import json
from dataclasses import fields

import pytest

from conftest import old_style_config, vector_default
from dreamvid import __version__
from dreamvid.config import (DEFAULT_MINUTES, PRESETS, RETIREMENTS, DataConfig, RNNConfig, RunConfig,
                             TrainConfig, VAEConfig, make_config, without_retired)
from dreamvid.errors import DreamvidError, UsageError
from dreamvid.training import train

# Every field of dreamvid 0.1.0 (commit 7160bca), as its dataclasses listed them.
FIELDS_0_1_0 = {
    "vae": ["kind", "size", "z_dim", "channels", "hidden", "reconstruction", "kl_weight", "free_bits", "kl_anneal",
            "lr", "lr_schedule", "adversarial_weight", "adversarial_start", "critic_channels", "gradient_weight",
            "ssim_weight", "edge_weight", "refine", "coords", "grid", "decoder_tuning"],
    "rnn": ["kind", "cell", "hidden", "layers", "dropout", "gaussians", "seq_len", "lr", "lr_decay", "grad_clip",
            "input_noise", "open_loop", "latents", "keep_best", "feed_noise", "temperature", "decode_spread"],
    "data": ["size", "fps", "crop", "sources", "cache_key"],
    "train": ["minutes", "vae_epochs", "rnn_epochs", "batch_size", "rnn_batch_size", "vae_share", "seed", "bf16",
              "default_minutes"],
}
SECTIONS = {"vae": VAEConfig, "rnn": RNNConfig, "data": DataConfig, "train": TrainConfig}


def test_make_config_applies_size_to_model_and_data():
    config = make_config("worldmodels", size=128)
    assert config.vae.size == config.data.size == 128
    assert config.vae.free_bits == 0.5 and config.rnn.gaussians == 5
    assert config.version == __version__


@pytest.mark.parametrize("settings, words", [
    ({"preset": "huge"}, "unknown preset"), ({"size": 48}, "--size 48"), ({"crop": "zoom"}, "--crop 'zoom'"),
    ({"fps": 0}, "--fps"), ({"minutes": 0}, "--minutes"), ({"vae_epochs": -1}, "--vae-epochs"),
    ({"batch_size": 0}, "--batch-size"),
])
def test_make_config_refuses_impossible_choices(settings, words):
    with pytest.raises(UsageError, match=words):
        make_config(**settings)


def test_the_budget_is_split_by_the_preset_and_defaults_only_without_epochs():
    assert PRESETS["default"]().train.vae_share == 0.5 and PRESETS["worldmodels"]().train.vae_share == 0.6
    assert {PRESETS[name]().train.vae_share for name in ("worldmodels", "classic", "tiny", "tiny-vector")} == {0.6}
    assert TrainConfig().budget_seconds() == DEFAULT_MINUTES * 60
    assert TrainConfig(vae_epochs=1).budget_seconds() is None
    assert TrainConfig(minutes=2, rnn_epochs=3).budget_seconds() == 120


def test_every_field_is_chosen_by_a_preset_an_option_or_training():
    options = set(inspect.signature(make_config).parameters) | set(inspect.signature(train).parameters)
    written_by_training = {("data", "sources"), ("data", "cache_key")}
    # Set by presets to the dataclass default, stated because the recipe they follow names them.
    stated = {("vae", "hidden"), ("rnn", "temperature")}
    presets = [PRESETS[name]() for name in PRESETS]
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            default = getattr(cls(), f.name)
            varied = any(getattr(getattr(preset, section), f.name) != default for preset in presets)
            assert varied or f.name in options or (section, f.name) in written_by_training | stated, \
                f"{section}.{f.name} is set by no preset and no option: make it a constant"


def test_every_field_of_0_1_0_is_kept_or_retired():
    retired = RETIREMENTS[0]
    for section, names in FIELDS_0_1_0.items():
        current = {f.name for f in fields(SECTIONS[section])}
        for name in names:
            assert (name in current) != (name in retired.fields.get(section, {})), f"{section}.{name}"
    for section, values_of in retired.values.items():
        for name, values in values_of.items():
            assert name in FIELDS_0_1_0[section] and values


def test_no_retired_field_is_still_a_field():
    for retirement in RETIREMENTS:
        for section, names in retirement.fields.items():
            assert not set(names) & {f.name for f in fields(SECTIONS[section])}, retirement.version


@pytest.mark.parametrize("preset", ["default", "worldmodels", "classic"])
def test_a_0_1_0_config_with_its_retired_fields_at_their_defaults_loads(tmp_path, preset):
    config = make_config(vector_default() if preset == "default" else preset)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old_style_config(config)))
    loaded = RunConfig.load(path)
    assert (loaded.vae, loaded.rnn, loaded.data, loaded.train) == (config.vae, config.rnn, config.data, config.train)
    assert loaded.version == "0.1.0"


@pytest.mark.parametrize("section, name, value, shown", [
    ("vae", "grid", 8, "8"), ("vae", "coords", True, "true"), ("vae", "kl_weight", 0.5, "0.5"),
    ("rnn", "cell", "gru", '"gru"'), ("rnn", "cell", "transformer", '"transformer"'),
    ("rnn", "latents", "means", '"means"'), ("vae", "reconstruction", "l1", '"l1"'),
    ("train", "default_minutes", 5, "5"),
])
def test_a_retired_setting_is_refused_naming_the_version_that_had_it(tmp_path, section, name, value, shown):
    raw = old_style_config(make_config("worldmodels"))
    raw[section][name] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(DreamvidError) as refused:
        RunConfig.load(path)
    assert str(refused.value) == (
        f"{path} sets {section}.{name} = {shown}, a setting of dreamvid 0.1.0 (commit 7160bca) that this "
        f"version ({__version__}) retired; retrain the run with this version, or dream it with dreamvid 0.1.0")
    assert type(refused.value) is DreamvidError  # exit code 1


@pytest.mark.parametrize("value, refused", [(0.0, False), (0.2, True)])
def test_a_0_3_0_map_setting_loads_at_its_default_and_is_refused_otherwise(tmp_path, value, refused):
    raw = json.loads(make_config("tiny").to_json())
    raw["rnn"]["own_samples"] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    if not refused:
        assert RunConfig.load(path).rnn == make_config("tiny").rnn
        return
    with pytest.raises(DreamvidError, match=r"rnn.own_samples = 0.2, a setting of dreamvid 0.3.0 \(commit 174d4e2\)"):
        RunConfig.load(path)


def test_without_retired_leaves_the_rest_alone():
    raw = {"preset": "tiny", "vae": {"z_dim": 8, "grid": 0}, "rnn": {"cell": "lstm"}, "format": 1}
    assert without_retired(raw) == {"preset": "tiny", "vae": {"z_dim": 8}, "rnn": {"cell": "lstm"}, "format": 1}
    assert raw["vae"] == {"z_dim": 8, "grid": 0}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_round_trips_through_json(preset):
    config = make_config(preset)
    assert RunConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize("settings, words", [
    ({"cell": "gru"}, "rnn.cell must be one of lstm, lnlstm"), ({"dropout": 1.0}, "rnn.dropout"),
    ({"decode_spread": 2}, "rnn.decode_spread"),
])
def test_rnn_config_refuses_what_no_model_can_be(settings, words):
    with pytest.raises(ValueError, match=words):
        RNNConfig(**settings)
