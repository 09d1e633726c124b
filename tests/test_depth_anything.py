"""DINOv2 families against transformers on the same random weights: Depth Anything (relative, metric)
and DPT-DINOv2. At the trained size transformers is faithful; elsewhere its DINOv2 position resize
lacks the original's +0.1 offset, so the reference there is transformers with the original rule put
back (tests/depth_anything.py). Tolerance: max|ours - theirs| <= 1e-4 max|theirs|."""

from __future__ import annotations

import copy
import json
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli import run_cli
from depth_anything import patch_position_interpolation
from dpt_cli.config import DPTConfig
from dpt_cli.weights import load_model
from reference import reference_output, rel_err
from test_cli_depth import SAMPLES, photo
from test_cli_models import _fake_hub, _manifest

TOL = 1e-4
NAMES = ["depth_anything", "depth_anything_metric", "dinov2_dpt"]


def _original(ref):
    return patch_position_interpolation(copy.deepcopy(ref))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(56, 56), (56, 84), (84, 56), (28, 70), (70, 70), (42, 98)])
def test_matches_the_original_rule_at_any_size(saved_models, name, size):
    folder, ref = saved_models(name)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        got = load_model(folder)(x)
    want = reference_output(_original(ref), x)
    assert rel_err(got, want) <= TOL
    if size != (56, 56):  # transformers as shipped is off there (the full-size gap: tests/test_convert_depth_anything.py)
        assert rel_err(got, reference_output(ref, x)) > 2 * TOL


def test_config_round_trips_and_transformers_reads_ours(saved_models):
    from transformers import DepthAnythingConfig

    for name in NAMES:
        folder, _ = saved_models(name)
        raw = json.loads((folder / "config.json").read_text())
        config = DPTConfig.from_dict(raw)
        assert config.family == "dinov2" and config.is_depth_anything == (name != "dinov2_dpt")
        assert DPTConfig.from_dict(config.to_dict()) == config
        if config.is_depth_anything:
            theirs = DepthAnythingConfig.from_dict(config.to_dict())
            assert theirs.depth_estimation_type == config.depth_estimation_type
            assert theirs.backbone_config.out_indices == [i + 1 for i in config.backbone_config.out_indices]
    metric = DPTConfig.from_json_file(saved_models("depth_anything_metric")[0] / "config.json")
    assert metric.is_metric and metric.max_depth == 20


def _da_pipeline(model, path, net: int, corners: bool) -> np.ndarray:
    """Depth Anything V2's infer_image, independently: OpenCV, 'lower bound' to multiples of 14,
    ImageNet statistics, the model, bilinear (align_corners) back to the photo."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0
    h, w = img.shape[:2]
    scale = max(net / h, net / w)

    def side(x: float) -> int:
        y = int(np.round(x / 14) * 14)
        return int(np.ceil(x / 14) * 14) if y < net else y

    nh, nw = side(scale * h), side(scale * w)
    x = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    pred = reference_output(model, torch.from_numpy(x.transpose(2, 0, 1)).float()[None])
    return F.interpolate(pred[None].double(), size=(h, w), mode="bilinear", align_corners=corners)[0, 0].numpy()


@pytest.mark.parametrize("name, repo", [("depth_anything", "depth-anything/Depth-Anything-V2-Small-hf"),
                                        ("depth_anything_metric", "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf")])
def test_official_depth_anything_runs_the_original_pipeline(saved_models, tmp_path, monkeypatch, name, repo):
    folder, ref = saved_models(name)
    monkeypatch.setenv("HF_HUB_CACHE", str(_fake_hub(tmp_path, folder, repo)))
    src = os.path.join(SAMPLES, "coffee.png")  # 400 x 600: 'lower bound' at 56 gives 56 x 84
    result = run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", repo)
    assert result.code == 0, result.err
    got = np.load(tmp_path / "d.npy")
    want = _da_pipeline(_original(ref), src, net=56, corners=True)
    assert got.shape == (400, 600)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    run = _manifest(tmp_path)
    assert run["files"][0]["network_size"] == [56, 84]
    assert run["runs"][-1]["units"] == ("metres" if "metric" in name else "inverse relative depth (larger is nearer)")


def test_official_dinov2_dpt_pads_and_crops_like_the_depther(saved_models, tmp_path, monkeypatch):
    folder, ref = saved_models("dinov2_dpt")
    monkeypatch.setenv("HF_HUB_CACHE", str(_fake_hub(tmp_path, folder, "facebook/dpt-dinov2-small-nyu")))
    src = photo(tmp_path / "p.png", (45, 71))
    result = run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", "dinov2-small-nyu")
    assert result.code == 0, result.err
    # the depther, independently: ImageNet statistics, zero padding about the centre to multiples of
    # 14 (45 -> 56: 5 on top, 6 below; 71 -> 84: 6 left, 7 right), ReLU + 0.001 clamped to
    # [0.001, 10], bilinear to the padded size, the padding cropped
    img = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0
    x = torch.from_numpy(((img - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)).float()
    x = F.pad(x, (6, 7, 5, 6))[None]
    depth = (reference_output(_original(ref), x) + 0.001).clamp(0.001, 10.0)
    want = F.interpolate(depth[None].double(), size=(56, 84), mode="bilinear", align_corners=False)[0, 0, 5:50, 6:77].numpy()
    got = np.load(tmp_path / "d.npy")
    assert got.shape == (45, 71)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert _manifest(tmp_path)["files"][0]["network_size"] == [56, 84]
    for option in (["--size", "512"], ["--no-keep-aspect"]):  # no option is silently ignored
        again = run_cli("depth", src, "-o", tmp_path / "e.npy", "-m", "dinov2-small-nyu", *option)
        assert again.code == 2 and "--size and --no-keep-aspect do not apply" in again.err
        assert not (tmp_path / "e.npy").exists()


def test_info_shows_family_units_and_max_depth(saved_models):
    result = run_cli("info", saved_models("depth_anything_metric")[0])
    assert result.code == 0, result.err
    assert "Depth Anything" in result.out and "metres" in result.out and "max depth    20 m" in result.out


@pytest.mark.parametrize("layout", ["save_pretrained", "state_dict"])
def test_swiglu_giant_shape_loads_from_both_namings(tmp_path, layout):
    """DINOv2-giant's SwiGLU MLP: hub files hold weights_in (gate and up in one), transformers 5 keeps
    gate_proj and up_proj apart in memory; both load into our fused fc1."""
    import shutil

    from reference import VARIANTS, make_reference

    spec = copy.deepcopy(VARIANTS["dinov2_dpt"])
    spec["backbone_config"]["use_swiglu_ffn"] = True
    ref = make_reference(spec, seed=1)
    ref.save_pretrained(tmp_path / "hub")
    folder = tmp_path / "hub"
    if layout == "state_dict":
        folder = tmp_path / "saved"
        folder.mkdir()
        shutil.copy(tmp_path / "hub" / "config.json", folder)
        state = ref.state_dict()
        assert any(".mlp.gate_proj." in k for k in state)
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            assert any(".mlp.weights_in." in k for k in f.keys())
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        assert rel_err(load_model(folder)(x), reference_output(ref, x)) <= TOL


def test_dinov2_image_size_disagreeing_with_the_table(saved_models, tmp_path):
    import shutil

    from dpt_cli.config import ConfigError

    folder, _ = saved_models("depth_anything")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["backbone_config"]["image_size"] = 518
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"'backbone_config.image_size' is \[518, 518\] \(37x37 patches\), but the weights' position table has 17 rows"):
        load_model(bad)


def test_swiglu_model_saved_by_us_loads_in_transformers(tmp_path):
    from transformers import DPTForDepthEstimation

    from dpt_cli.weights import save_model
    from reference import VARIANTS, make_reference

    spec = copy.deepcopy(VARIANTS["dinov2_dpt"])
    spec["backbone_config"]["use_swiglu_ffn"] = True
    ref = make_reference(spec, seed=1)
    ref.save_pretrained(tmp_path / "hub")
    save_model(load_model(tmp_path / "hub"), tmp_path / "ours")
    again = DPTForDepthEstimation.from_pretrained(tmp_path / "ours").eval()
    x = torch.randn(1, 3, 56, 56)
    assert rel_err(reference_output(again, x), reference_output(ref, x)) <= 1e-6


def test_v1_goes_back_without_align_corners(saved_models, tmp_path, monkeypatch):
    """V1 (the head reads the last four blocks) resizes its prediction back without align_corners."""
    from reference import TINY_DEPTH_ANYTHING, make_reference

    spec = copy.deepcopy(TINY_DEPTH_ANYTHING)
    spec["backbone_config"]["out_features"] = ["stage3", "stage4", "stage5", "stage6"]
    ref = make_reference(spec, seed=4)
    ref.save_pretrained(tmp_path / "v1")
    monkeypatch.setenv("HF_HUB_CACHE", str(_fake_hub(tmp_path, tmp_path / "v1", "LiheYoung/depth-anything-small-hf")))
    src = os.path.join(SAMPLES, "coffee.png")
    result = run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", "da1-small")
    assert result.code == 0, result.err
    got, want = np.load(tmp_path / "d.npy"), _da_pipeline(_original(ref), src, net=56, corners=False)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert run_cli("info", tmp_path / "v1").out.count("Depth Anything V1 (relative)") == 1
