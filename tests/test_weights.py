"""Loading and saving transformers-layout folders: the key table, strictness, safety, round trips."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import DPTForDepthEstimation, DPTForSemanticSegmentation

from dpt_cli.config import DPTConfig
from dpt_cli.weights import load_model, save_model
from dpt_cli.weights.files import WeightsError
from dpt_cli.weights.keymap import KeyMismatch
from dpt_cli.weights.load import ShapeMismatch, build_empty
from dpt_cli.weights.transformers_layout import table_for
from reference import reference_output, rel_err


@pytest.mark.parametrize("name", ["large_shaped", "hybrid", "seg", "hybrid_seg", "projection"])
def test_table_round_trips_every_key_and_tensor(saved_models, name):
    folder, _ = saved_models(name)
    theirs = load_file(folder / "model.safetensors")
    config = DPTConfig.from_json_file(folder / "config.json")
    table = table_for(config)
    ours = table.to_ours(theirs, build_empty(config).state_dict().keys())
    back = table.to_foreign(ours)
    assert back.keys() == theirs.keys()
    for key, tensor in theirs.items():
        assert torch.equal(back[key], tensor), key


def test_qkv_fused_in_q_k_v_order(saved_models):
    folder, _ = saved_models("large_shaped")
    theirs = load_file(folder / "model.safetensors")
    model = load_model(folder)
    d = model.config.hidden_size
    qkv = model.backbone.blocks[7].attn.qkv
    for i, part in enumerate(("query", "key", "value")):
        prefix = f"dpt.encoder.layer.7.attention.attention.{part}"
        assert torch.equal(qkv.weight[i * d : (i + 1) * d], theirs[f"{prefix}.weight"])
        assert torch.equal(qkv.bias[i * d : (i + 1) * d], theirs[f"{prefix}.bias"])


def test_fusion_blocks_reversed(saved_models):
    folder, _ = saved_models("large_shaped")
    theirs = load_file(folder / "model.safetensors")
    model = load_model(folder)
    # transformers' fusion layer 0 is the deepest stage, ours is numbered by stage (3 = deepest)
    assert torch.equal(model.neck.fusion[3].out_conv.weight, theirs["neck.fusion_stage.layers.0.projection.weight"])
    assert torch.equal(model.neck.fusion[0].res1.conv2.bias, theirs["neck.fusion_stage.layers.3.residual_layer1.convolution2.bias"])


def _copy_with(folder, tmp_path, edit):
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    state = load_file(target / "model.safetensors")
    edit(state)
    save_file(state, target / "model.safetensors")
    return target


def test_missing_key_is_listed(saved_models, tmp_path):
    folder, _ = saved_models("readout_add")
    target = _copy_with(folder, tmp_path, lambda s: s.pop("neck.convs.2.weight"))
    with pytest.raises(KeyMismatch, match=r"1 missing key\(s\): neck\.convs\.2\.weight"):
        load_model(target)


def test_unexpected_key_is_listed(saved_models, tmp_path):
    folder, _ = saved_models("readout_add")
    target = _copy_with(folder, tmp_path, lambda s: s.update({"dpt.pooler.dense.weight": torch.zeros(2, 2)}))
    with pytest.raises(KeyMismatch, match=r"1 unexpected key\(s\): dpt\.pooler\.dense\.weight"):
        load_model(target)


def test_wrong_shape_is_reported(saved_models, tmp_path):
    folder, _ = saved_models("readout_add")
    target = _copy_with(folder, tmp_path, lambda s: s.update({"neck.convs.2.weight": torch.zeros(1, 1, 3, 3)}))
    with pytest.raises(ShapeMismatch, match=r"neck\.convs\.2\.weight \(1, 1, 3, 3\)"):
        load_model(target)


def test_loading_does_not_initialise_randomly(saved_models, monkeypatch):
    folder, _ = saved_models("hybrid")

    def forbidden(tensor, *args, **kwargs):
        # Module constructors call the initialisers; on the meta device they touch no memory.
        if tensor.device.type != "meta":
            raise AssertionError("random initialisation of real memory during load")
        return tensor

    for name in ("kaiming_uniform_", "uniform_", "normal_", "trunc_normal_"):
        monkeypatch.setattr(torch.nn.init, name, forbidden)
    load_model(folder)


def test_pytorch_model_bin_is_loaded(saved_models, tmp_path):
    folder, ref = saved_models("seg")
    target = tmp_path / "bin"
    target.mkdir()
    shutil.copy(folder / "config.json", target)
    torch.save(ref.state_dict(), target / "pytorch_model.bin")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(load_model(target)(x), reference_output(ref, x)) <= 1e-4


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused(saved_models, tmp_path, monkeypatch, writer):
    folder, _ = saved_models("readout_add")
    target = tmp_path / "evil"
    target.mkdir()
    shutil.copy(folder / "config.json", target)
    if writer == "torch.save":
        torch.save({"x": _Evil()}, target / "pytorch_model.bin")
    else:
        with open(target / "pytorch_model.bin", "wb") as f:
            pickle.dump({"x": _Evil()}, f)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="refused"):
        load_model(target)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", ["large_shaped", "hybrid", "hybrid_seg"])
def test_saved_folder_loads_in_transformers_with_same_outputs(saved_models, tmp_path, name):
    folder, _ = saved_models(name)
    ours = load_model(folder)
    save_model(ours, tmp_path / "saved")
    cls = DPTForSemanticSegmentation if ours.config.task == "segmentation" else DPTForDepthEstimation
    theirs = cls.from_pretrained(tmp_path / "saved").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), reference_output(theirs, x)) <= 1e-4
    assert load_model(tmp_path / "saved").config == ours.config


def _resolve_in_subprocess(spec: str, cache) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache))
    code = "import sys; from dpt_cli.weights.hub import resolve; print(resolve(sys.argv[1]))"
    return subprocess.run([sys.executable, "-c", code, spec], env=env, capture_output=True, text=True)


def test_hub_ids_and_aliases_resolve_from_the_cache_offline(saved_models, tmp_path):
    folder, _ = saved_models("readout_add")
    repo = tmp_path / "hub" / "models--Intel--dpt-large"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(folder / name, snapshot / name)
    for spec in ("Intel/dpt-large", "large"):
        done = _resolve_in_subprocess(spec, tmp_path / "hub")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(snapshot)


def test_uncached_hub_id_offline_says_how_to_pass_a_folder(tmp_path):
    done = _resolve_in_subprocess("Intel/dpt-hybrid-midas", tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ModelNotFound" in last and "HF_HUB_OFFLINE is set" in last and "pass its folder" in last
