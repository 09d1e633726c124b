"""Which preprocessing each model gets, metric units, --size/--no-keep-aspect and dtypes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cli import run_cli
from reference import metric_copy
from test_cli_depth import photo
from test_preprocess import original_size


def _manifest(folder):
    return json.loads((folder / "dpt-run.json").read_text())


def _fake_hub(tmp_path, folder, repo="Intel/dpt-large"):
    """A huggingface_hub cache holding `folder` as `repo`, with the hub's squashing preprocessor."""
    org, name = repo.split("/")
    snapshot = tmp_path / "hub" / f"models--{org}--{name}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(folder / f, snapshot / f)
    (snapshot / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 384, "width": 384}, "keep_aspect_ratio": False, "resample": 2}))
    return tmp_path / "hub"


def test_intel_models_use_the_original_preprocessing(saved_models, tmp_path, monkeypatch):
    folder, _ = saved_models("large_shaped")
    monkeypatch.setenv("HF_HUB_CACHE", str(_fake_hub(tmp_path, folder)))
    src = photo(tmp_path / "wide.png", (300, 600))
    for model in ("Intel/dpt-large", "large"):
        out = tmp_path / model.replace("/", "_")
        result = run_cli("depth", src, "-o", out, "-m", model)
        assert result.code == 0, result.err
        assert _manifest(out)["files"][0]["network_size"] == list(original_size(300, 600, 384)) == [384, 768]


def test_other_folders_follow_their_preprocessor_config(saved_models, tmp_path):
    folder, _ = saved_models("large_shaped")
    local = tmp_path / "model"
    shutil.copytree(folder, local)
    (local / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 256, "width": 256}, "keep_aspect_ratio": False}))
    src = photo(tmp_path / "wide.png", (300, 600))
    assert run_cli("depth", src, "-o", tmp_path / "a", "-m", local).code == 0
    assert _manifest(tmp_path / "a")["files"][0]["network_size"] == [256, 256]
    assert run_cli("depth", src, "-o", tmp_path / "b", "-m", local, "--size", "352x1216").code == 0
    assert _manifest(tmp_path / "b")["files"][0]["network_size"] == [352, 1216]
    assert run_cli("depth", src, "-o", tmp_path / "c", "-m", folder, "--size", "512").code == 0
    assert _manifest(tmp_path / "c")["files"][0]["network_size"] == [256, 512]
    assert run_cli("depth", src, "-o", tmp_path / "d", "-m", folder, "--no-keep-aspect").code == 0
    assert _manifest(tmp_path / "d")["files"][0]["network_size"] == [384, 384]


def test_metric_model_reports_metres(saved_models, tmp_path):
    folder, _ = saved_models("hybrid")
    metric = metric_copy(folder, tmp_path / "metric")
    result = run_cli("depth", photo(tmp_path / "i.png"), "-o", tmp_path / "d.npy", "-m", metric)
    assert result.code == 0, result.err
    assert _manifest(tmp_path)["runs"][-1]["units"] == "metres"
    depth = np.load(tmp_path / "d.npy")
    assert depth.min() > 0 and depth.max() <= 1 / 0.1378 + 1e-3  # 1 / (scale * x + shift), x >= 0


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_dtypes_on_cpu(saved_models, tmp_path, dtype):
    folder, _ = saved_models("large_shaped")
    src = photo(tmp_path / "i.png")
    assert run_cli("depth", src, "-o", tmp_path / "ref.npy", "-m", folder).code == 0
    result = run_cli("depth", src, "-o", tmp_path / f"{dtype}.npy", "-m", folder, "--dtype", dtype, "--device", "cpu")
    assert result.code == 0, result.err
    assert f"dtype {dtype}" in result.err and _manifest(tmp_path)["runs"][-1]["dtype"] == dtype
    ref, got = np.load(tmp_path / "ref.npy"), np.load(tmp_path / f"{dtype}.npy")
    assert np.abs(got - ref).max() <= (5e-2 if dtype == "bfloat16" else 0) * np.abs(ref).max()


def test_images_found_by_content(saved_models, tmp_path):
    folder, _ = saved_models("large_shaped")
    photo(tmp_path / "in" / "snapshot", (30, 40), format="PNG")  # no extension at all
    (tmp_path / "in" / "README").write_text("not an image")
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", folder)
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "snapshot.png").exists() and len(list((tmp_path / "out").iterdir())) == 2


@pytest.mark.parametrize("factor", [0, -1, "x", 1e-320])
def test_bad_rescale_factor_is_one_line(saved_models, tmp_path, factor):
    folder, _ = saved_models("large_shaped")
    local = tmp_path / "model"
    shutil.copytree(folder, local)
    (local / "preprocessor_config.json").write_text(json.dumps({"size": 384, "rescale_factor": factor}))
    result = run_cli("depth", photo(tmp_path / "p.png"), "-o", tmp_path / "d.png", "-m", local)
    assert result.code == 2 and "rescale_factor" in result.err and "Traceback" not in result.err, result.err
