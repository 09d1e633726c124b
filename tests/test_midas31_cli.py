"""MiDaS v3.1 through the command line: official ids get the original pipeline of their family."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli import run_cli
from reference import reference_output
from test_cli_depth import SAMPLES
from test_cli_models import _fake_hub, _manifest
from test_preprocess import original_size

FAMILIES = {"beit": "Intel/dpt-beit-base-384", "swinv2": "Intel/dpt-swinv2-tiny-256"}


def original_pipeline(model, path, keep_aspect: bool, net: int) -> np.ndarray:
    """MiDaS v3.1's run.py, independently: OpenCV read, INTER_CUBIC to the family's size (BEiT keeps the
    aspect ratio, Swin-V2 squashes to the square), transformers' model, bicubic back to the photo."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    h, w = original_size(*img.shape[:2], net) if keep_aspect else (net, net)
    x = (cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC) - 0.5) / 0.5
    pred = reference_output(model, torch.from_numpy(x.transpose(2, 0, 1))[None])
    return F.interpolate(pred[None].double(), size=img.shape[:2], mode="bicubic", align_corners=False)[0, 0].numpy()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_official_ids_run_the_original_pipeline(saved_models, tmp_path, monkeypatch, family):
    folder, ref = saved_models(family)
    repo = FAMILIES[family]
    monkeypatch.setenv("HF_HUB_CACHE", str(_fake_hub(tmp_path, folder, repo)))  # its preprocessor squashes to 384
    src = os.path.join(SAMPLES, "coffee.png")  # 400 x 600
    alias = repo.removeprefix("Intel/dpt-")
    for model in (repo, alias):
        out = tmp_path / alias / model.replace("/", "_")
        result = run_cli("depth", src, "-o", out / "d.npy", "-m", model)
        assert result.code == 0, result.err
        got = np.load(out / "d.npy")
        want = original_pipeline(ref, src, keep_aspect=family == "beit", net=64)
        assert got.shape == (400, 600)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
        run = _manifest(out)
        assert run["files"][0]["network_size"] == ([64, 96] if family == "beit" else [64, 64])
        settings = run["runs"][-1]["settings"]
        assert settings["backbone"] == family and settings["keep_aspect"] == (family == "beit")
        assert ("note" in settings) == (family == "swinv2")


def test_info_shows_the_family(saved_models):
    for family, words in (("beit", "MiDaS v3.1 (BEiT)"), ("swinv2", "MiDaS v3.1 (Swin-V2)")):
        folder, _ = saved_models(family)
        result = run_cli("info", folder)
        assert result.code == 0, result.err
        assert f"family       {words}" in result.out


def test_swinv2_folder_without_preprocessor_config_squashes(saved_models, tmp_path):
    folder, _ = saved_models("swinv2")
    src = os.path.join(SAMPLES, "coffee.png")
    assert run_cli("depth", src, "-o", tmp_path / "d.png", "-m", folder).code == 0
    assert json.loads((tmp_path / "dpt-run.json").read_text())["files"][0]["network_size"] == [64, 64]


def test_swinv2_at_another_size_says_so(saved_models, tmp_path):
    folder, ref = saved_models("swinv2")
    src = os.path.join(SAMPLES, "coffee.png")
    result = run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", folder, "--size", "128")
    assert result.code == 0, result.err
    assert "trained at 64x64, the only size the original runs it at" in result.err
    assert json.loads((tmp_path / "dpt-run.json").read_text())["files"][0]["network_size"] == [128, 128]
