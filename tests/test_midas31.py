"""MiDaS v3.1 families (BEiT, Swin-V2) against transformers' DPTForDepthEstimation on the same random
weights: max|ours - theirs| <= 1e-4 max|theirs|, at the trained size and at the other sizes
transformers runs (non-square included)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dpt_cli.config import ConfigError, DPTConfig
from dpt_cli.weights import load_model
from reference import TINY_BEIT, make_reference, reference_output, rel_err

TOL = 1e-4


@pytest.mark.parametrize("name", ["beit", "swinv2"])
@pytest.mark.parametrize("size", [(64, 64), (64, 96), (128, 64), (32, 32), (96, 160)])
def test_matches_transformers_at_any_size(saved_models, name, size):
    folder, ref = saved_models(name)
    ours = load_model(folder)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        got = ours(x)
    assert got.shape == (2, *size)
    assert rel_err(got, reference_output(ref, x)) <= TOL


def _with_eps(folder, target, eps):
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    config["backbone_config"]["layer_norm_eps"] = eps
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_official_beit_runs_with_the_original_eps(saved_models, tmp_path):
    """The Intel configs say 1e-12; an official id runs with the weights' 1e-6, any other folder as it says."""
    folder, ref = saved_models("beit")  # the reference itself was built with 1e-6
    intel_like = _with_eps(folder, tmp_path / "intel", 1e-12)
    official = load_model(intel_like, official=True)
    plain = load_model(intel_like)
    norms = lambda m: {mod.eps for mod in m.backbone.modules() if isinstance(mod, torch.nn.LayerNorm)}  # noqa: E731
    assert norms(official) == {1e-6} and norms(plain) == {1e-12}
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert rel_err(official(x), reference_output(ref, x)) <= TOL


def test_config_round_trip_keeps_every_key(saved_models):
    for name in ("beit", "swinv2"):
        folder, _ = saved_models(name)
        raw = json.loads((folder / "config.json").read_text())
        raw["backbone_config"]["a_key_we_do_not_know"] = [1]
        config = DPTConfig.from_dict(raw)
        assert config.family == name
        assert DPTConfig.from_dict(config.to_dict()) == config
        assert config.to_dict()["backbone_config"]["a_key_we_do_not_know"] == [1]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"use_relative_position_bias": False}, "backbone_config.use_relative_position_bias"),
        ({"reshape_hidden_states": True}, "backbone_config.reshape_hidden_states"),
        ({"out_features": ["stage1", "stage2"]}, "backbone_config.out_features"),
        ({"out_features": ["stage1", "stage2", "stage3", "stage9"]}, "backbone_config.out_features"),
        ({"num_attention_heads": 3}, "backbone_config.num_attention_heads"),
        ({"hidden_size": "wide"}, "backbone_config.hidden_size"),
        ({"model_type": "dinov3"}, "backbone_config' names a 'dinov3' backbone"),
    ],
)
def test_bad_beit_config_names_the_field(change, field):
    raw = make_reference(TINY_BEIT).config.to_dict()
    raw["backbone_config"].update(change)
    with pytest.raises(ConfigError, match=f"'{field}"):
        DPTConfig.from_dict(raw)


def test_swinv2_neck_widths_must_match_the_stages(saved_models):
    folder, _ = saved_models("swinv2")
    raw = json.loads((folder / "config.json").read_text())
    raw["neck_hidden_sizes"] = [16, 32, 64, 64]
    with pytest.raises(ConfigError, match="'neck_hidden_sizes' must be the Swin-V2 stage widths"):
        DPTConfig.from_dict(raw)


def test_weights_disagreeing_with_the_backbone_config(saved_models, tmp_path):
    folder, _ = saved_models("beit")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["backbone_config"]["num_hidden_layers"] = 6
    config["backbone_config"]["out_features"] = ["stage2", "stage3", "stage4", "stage6"]
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="'backbone_config.num_hidden_layers' is 6, but the weights have 4"):
        load_model(bad)


def test_swinv2_depths_disagreeing_with_the_weights(saved_models, tmp_path):
    folder, _ = saved_models("swinv2")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["backbone_config"]["depths"] = [2, 2, 6, 2]
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"'backbone_config.depths' is \[2, 2, 6, 2\], but the weights' stages have \[2, 2, 2, 2\] blocks"):
        load_model(bad)


def test_auto_dtype_keeps_swinv2_out_of_float16():
    from dpt_cli.pipeline.device import resolve_dtype

    gpu = torch.device("cuda")  # a device object only: nothing runs on it
    assert resolve_dtype("auto", gpu, "swinv2") == torch.bfloat16
    assert resolve_dtype("auto", gpu, "beit") == torch.float16
    assert resolve_dtype("auto", torch.device("cpu"), "swinv2") == torch.float32
    assert resolve_dtype("float16", gpu, "swinv2") == torch.float16


@pytest.mark.parametrize(
    "change, field",
    [
        ({"depths": 5}, "backbone_config.depths"),
        ({"depths": [2, 2, 2]}, "backbone_config.depths"),
        ({"image_size": 16}, "backbone_config.image_size"),
        ({"pretrained_window_sizes": [3, 3, 1, 2]}, "backbone_config.pretrained_window_sizes"),
        ({"out_features": None, "out_indices": [1, 2, 3, 9]}, "backbone_config.out_indices"),
    ],
)
def test_bad_swinv2_config_names_the_field(saved_models, change, field):
    folder, _ = saved_models("swinv2")
    raw = json.loads((folder / "config.json").read_text())
    raw["backbone_config"].update(change)
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DPTConfig.from_dict(raw)


def test_beit_image_size_disagreeing_with_the_table(saved_models, tmp_path):
    folder, _ = saved_models("beit")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["backbone_config"]["image_size"] = 96
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"'backbone_config.image_size' is \[96, 96\] \(6x6 patches\), but the weights' relative position table has 52 rows"):
        load_model(bad)


@pytest.mark.parametrize("name", ["beit", "swinv2"])
def test_transformers_in_memory_names_load_too(saved_models, tmp_path, name):
    """transformers 5 names BEiT's tensors differently in memory (backbone.beit.layers.N.attention.q_proj)
    than on disk: a torch.save of its state_dict loads through its own table."""
    folder, ref = saved_models(name)
    target = tmp_path / "saved"
    target.mkdir()
    shutil.copy(folder / "config.json", target)
    state = ref.state_dict()
    assert any(k.startswith("backbone.beit.") for k in state) == (name == "beit")
    torch.save(state, target / "pytorch_model.bin")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert rel_err(load_model(target)(x), reference_output(ref, x)) <= TOL


def test_official_means_an_official_name_not_a_local_folder(tmp_path, monkeypatch):
    from dpt_cli.weights.hub import is_official

    monkeypatch.chdir(tmp_path)
    assert is_official("beit-large-512") and is_official("Intel/dpt-swinv2-tiny-256") and is_official("large")
    assert not is_official("Intel/dpt-something-else") and not is_official("./large")
    (tmp_path / "Intel" / "dpt-large").mkdir(parents=True)
    assert not is_official("Intel/dpt-large")  # resolve() reads that folder: its own files decide
