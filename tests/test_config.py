"""config.json in and out: round trips keep every key, bad configs name the offending field."""

from __future__ import annotations

import json

import pytest

from dpt_cli.config import SEGMENTATION, ConfigError, DPTConfig


def _raw(saved_models, name):
    folder, _ = saved_models(name)
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("name", ["large_shaped", "hybrid", "hybrid_seg"])
def test_round_trip_keeps_every_key(saved_models, name):
    raw = _raw(saved_models, name)
    raw["a_key_we_do_not_know"] = {"nested": [1, 2]}
    back = DPTConfig.from_dict(raw).to_dict()
    assert back == raw


def test_fields_are_read(saved_models):
    c = DPTConfig.from_dict(_raw(saved_models, "hybrid_seg"))
    assert c.task == SEGMENTATION and c.num_labels == 7 and c.is_hybrid
    assert c.backbone_config.depths == (1, 1, 2) and c.neck_ignore_stages == (0, 1)
    assert c.fusion_bias is False  # BatchNorm in the fusion residual units and no explicit bias flag


def test_metric_fields_round_trip(saved_models):
    raw = dict(_raw(saved_models, "hybrid"), depth_scale=0.00006016, depth_shift=0.00579, invert_depth=True)
    c = DPTConfig.from_dict(raw)
    assert c.is_metric and c.depth_scale == 0.00006016
    assert DPTConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "change, field",
    [
        ({"model_type": "vit"}, "model_type"),
        ({"hidden_size": "big"}, "hidden_size"),
        ({"hidden_size": None}, "hidden_size"),
        ({"readout_type": "mean"}, "readout_type"),
        ({"hidden_act": "swish"}, "hidden_act"),
        ({"reassemble_factors": [4, 2, 1]}, "reassemble_factors"),
        ({"reassemble_factors": [4, 2, 1, 0.3]}, "reassemble_factors"),
        ({"backbone_out_indices": [5, 11, 17, 99]}, "backbone_out_indices"),
        ({"num_attention_heads": 5}, "num_attention_heads"),
        ({"architectures": ["DPTModel"]}, "architectures"),
        ({"backbone": "dinov2"}, "backbone_config"),
        ({"use_batch_norm_in_fusion_residual": "yes"}, "use_batch_norm_in_fusion_residual"),
    ],
)
def test_bad_config_names_the_field(saved_models, change, field):
    raw = dict(_raw(saved_models, "large_shaped"), **change)
    with pytest.raises(ConfigError, match=f"'{field}"):
        DPTConfig.from_dict(raw)


@pytest.mark.parametrize("field", ["hidden_size", "neck_hidden_sizes", "num_hidden_layers"])
def test_missing_field_is_named(saved_models, field):
    raw = _raw(saved_models, "large_shaped")
    del raw[field]
    with pytest.raises(ConfigError, match=f"field '{field}' is missing"):
        DPTConfig.from_dict(raw)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"layer_type": "preactivation"}, "backbone_config.layer_type"),
        ({"global_padding": None}, "backbone_config.global_padding"),
        ({"model_type": "resnet"}, "backbone_config.model_type"),
        ({"depths": [3, 4]}, "backbone_config.depths"),
    ],
)
def test_bad_hybrid_backbone_names_the_field(saved_models, change, field):
    raw = _raw(saved_models, "hybrid")
    raw["backbone_config"] = dict(raw["backbone_config"], **change)
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DPTConfig.from_dict(raw)


def test_unreadable_file_names_the_path(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=f"{bad}: not valid JSON"):
        DPTConfig.from_json_file(bad)


def test_segmentation_needs_labels(saved_models):
    raw = dict(_raw(saved_models, "seg"), id2label={})
    with pytest.raises(ConfigError, match="'id2label'"):
        DPTConfig.from_dict(raw)
