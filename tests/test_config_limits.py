"""Absurd configs are refused in one line naming the field, before any model is built.

The issue "absurd configs": `num_hidden_layers: 1000000` built for minutes, sizes of 1e9 gave
overflow tracebacks, deeply nested JSON gave RecursionError.
"""

from __future__ import annotations

import json
import shutil

import pytest

import dpt_cli.model
from dpt_cli.config import CONFIG_LIMITS, ConfigError, DPTConfig
from dpt_cli.weights import load_model
from cli import run_cli

BIG = 10**9


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _raw(saved_models, name: str) -> dict:
    folder, _ = saved_models(name)
    return json.loads((folder / "config.json").read_text())


def _folder_with(saved_models, tmp_path, name: str, text_edit=None, **changes):
    """A copy of a tiny model folder whose config.json is changed (as JSON values, then as text)."""
    folder, _ = saved_models(name)
    target = tmp_path / name
    shutil.copytree(folder, target)
    config = dict(_raw(saved_models, name), **changes)
    text = json.dumps(config)
    (target / "config.json").write_text(text_edit(text) if text_edit else text)
    return target


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if a model is constructed: every refusal must come before that."""

    def forbidden(self, config):
        raise AssertionError("the model was built from an absurd config")

    monkeypatch.setattr(dpt_cli.model.DPT, "__init__", forbidden)


@pytest.mark.parametrize(
    "change, field, said",
    [
        ({"num_hidden_layers": 1_000_000}, "num_hidden_layers", "at most 256, got 1000000"),
        ({"num_hidden_layers": -1}, "num_hidden_layers", "a positive integer, got -1"),
        ({"hidden_size": BIG}, "hidden_size", "at most 8192"),
        ({"hidden_size": 1e308}, "hidden_size", "a positive integer, got 1e+308"),
        ({"hidden_size": 1e9}, "hidden_size", "a positive integer, got 1000000000.0"),
        ({"num_attention_heads": BIG}, "num_attention_heads", "at most"),
        ({"intermediate_size": BIG}, "intermediate_size", "at most"),
        ({"patch_size": BIG}, "patch_size", "at most"),
        ({"num_channels": BIG}, "num_channels", "at most"),
        ({"fusion_hidden_size": BIG}, "fusion_hidden_size", "at most"),
        ({"neck_hidden_sizes": [16, 32, 64, BIG]}, "neck_hidden_sizes", "between 1 and 8192"),
        ({"neck_hidden_sizes": [16, 32, -1, 64]}, "neck_hidden_sizes", "got -1"),
        ({"reassemble_factors": [4, 2, 1, 1e308]}, "reassemble_factors", "between 1/32 and 32, got 1e+308"),
        ({"reassemble_factors": [4, 2, 1, 1e-308]}, "reassemble_factors", "got 1e-308"),
        ({"image_size": BIG}, "image_size", "must be between 1 and 16384"),
        ({"image_size": [64, BIG]}, "image_size", "entries must be between 1 and 16384"),
        ({"image_size": [-64, -64]}, "image_size", "got -64"),
        ({"backbone_out_indices": [0, 1, 2, BIG]}, "backbone_out_indices", "between 0 and 255"),
        ({"layer_norm_eps": 10**400}, "layer_norm_eps", "a finite number"),
        ({"depth_scale": float("inf")}, "depth_scale", "a finite number"),
        ({"some_key": _nested(40)}, "some_key", "nested more than 32 levels deep"),  # below json's own limit
    ],
)
def test_absurd_field_is_named(saved_models, change, field, said):
    raw = dict(_raw(saved_models, "readout_add"), **change)
    with pytest.raises(ConfigError, match=f"field '{field}'") as caught:
        DPTConfig.from_dict(raw)
    assert said in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"backbone_featmap_shape": [1, BIG, 4, 4]}, "backbone_featmap_shape"),
        ({"backbone_out_indices": [BIG, 1, 2, 3]}, "backbone_out_indices"),  # an ignored (CNN) stage's tap
        ({"backbone_config": {"depths": [1, 1, 1_000_000]}}, "backbone_config.depths"),
        ({"backbone_config": {"hidden_sizes": [32, 64, BIG, 256]}}, "backbone_config.hidden_sizes"),
        ({"backbone_config": {"embedding_size": BIG}}, "backbone_config.embedding_size"),
        ({"backbone_config": {"num_groups": BIG}}, "backbone_config.num_groups"),
        ({"backbone_config": {"num_groups": 3}}, "backbone_config.num_groups"),  # GroupNorm would raise
        ({"backbone_config": {"output_stride": "32"}}, "backbone_config.output_stride"),
    ],
)
def test_absurd_hybrid_field_is_named(saved_models, change, field):
    raw = _raw(saved_models, "hybrid")
    if "backbone_config" in change:
        change = {"backbone_config": dict(raw["backbone_config"], **change["backbone_config"])}
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        DPTConfig.from_dict(dict(raw, **change))


def test_more_labels_than_a_16_bit_png_holds(saved_models):
    labels = {str(i): f"c{i}" for i in range(70_000)}
    raw = dict(_raw(saved_models, "seg"), id2label=labels)
    with pytest.raises(ConfigError, match=r"field 'id2label' has 70000 classes, at most 65536: .*16-bit label PNG"):
        DPTConfig.from_dict(raw)
    assert CONFIG_LIMITS["id2label"] == 65536


def test_million_layers_is_refused_before_building(saved_models, tmp_path, no_build):
    folder = _folder_with(saved_models, tmp_path, "large_shaped", num_hidden_layers=1_000_000)
    with pytest.raises(ConfigError, match=r"config\.json: field 'num_hidden_layers' must be at most 256, got 1000000"):
        load_model(folder)


@pytest.mark.parametrize("token, field", [("NaN", "layer_norm_eps"), ("Infinity", "depth_shift"), ("-Infinity", "hidden_size")])
def test_nan_and_infinity_tokens_are_refused(saved_models, tmp_path, no_build, token, field):
    folder = _folder_with(
        saved_models, tmp_path, "readout_add", text_edit=lambda t: t.replace('"PLACEHOLDER"', token), **{field: "PLACEHOLDER"}
    )
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        load_model(folder)


def test_json_nested_100000_deep_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError, match=f"{path}: JSON nested too deeply"):
        DPTConfig.from_json_file(path)


def test_20_mb_config_is_refused_without_parsing(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 64, "padding": "x" * 20 * 2**20}))
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("an oversized config.json was parsed"))
    with pytest.raises(ConfigError, match=f"{path}: larger than 16 MiB"):
        DPTConfig.from_json_file(path)


def test_layers_disagreeing_with_the_weights(saved_models, tmp_path, no_build):
    folder = _folder_with(saved_models, tmp_path, "large_shaped", num_hidden_layers=30)
    with pytest.raises(ConfigError, match=r"config\.json: field 'num_hidden_layers' is 30, but the weights have 24 transformer layers"):
        load_model(folder)


def test_hidden_size_disagreeing_with_the_weights(saved_models, tmp_path, no_build):
    folder = _folder_with(saved_models, tmp_path, "readout_add", hidden_size=128)
    with pytest.raises(ConfigError, match=r"field 'hidden_size' is 128, but the weights' position embeddings are 64 wide"):
        load_model(folder)


def test_hybrid_width_disagreeing_with_the_weights(saved_models, tmp_path, no_build):
    folder = _folder_with(saved_models, tmp_path, "hybrid", intermediate_size=256)
    with pytest.raises(ConfigError, match=r"field 'intermediate_size' is 256, but the weights' MLP is 128 wide"):
        load_model(folder)


def test_cli_says_it_in_one_line(saved_models, tmp_path):
    folder = _folder_with(saved_models, tmp_path, "large_shaped", num_hidden_layers=1_000_000)
    result = run_cli("info", folder)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    assert "field 'num_hidden_layers' must be at most 256, got 1000000" in lines[0]
