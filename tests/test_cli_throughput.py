"""The throughput options through the real CLI: --profile, --png-level, --compile, the defaults."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from cli import run_cli
from test_cli_depth import photo


@pytest.fixture
def tiny(saved_models):
    return saved_models("readout_add")[0]


def _manifest(out):
    return json.loads((out / "dpt-run.json").read_text())


def test_profile_is_recorded_and_printed(tiny, tmp_path):
    for i in range(3):
        photo(tmp_path / "in" / f"{i}.png", seed=i)
    out = tmp_path / "out"
    result = run_cli("depth", tmp_path / "in", "-o", out, "-m", tiny, "--profile", "-q")
    assert result.code == 0, result.err
    profile = _manifest(out)["runs"][-1]["profile"]
    assert profile["images"] == 3 and profile["wall_seconds"] > 0
    assert set(profile["seconds"]) == {"read", "preprocess", "forward", "postprocess", "encode"}
    assert all(v > 0 for v in profile["seconds"].values())
    assert result.err.startswith("profile (ms per image, summed over threads): read ")


def test_no_profile_without_the_option(tiny, tmp_path):
    src = photo(tmp_path / "in.png")
    assert run_cli("depth", src, "-o", tmp_path / "out", "-m", tiny, "-q").code == 0
    assert "profile" not in _manifest(tmp_path / "out")["runs"][-1]


def test_png_level_changes_size_not_pixels(tiny, tmp_path):
    src = photo(tmp_path / "in.png", size=(120, 160))
    pixels, sizes = [], []
    for level in ("0", "9"):
        out = tmp_path / f"l{level}.png"
        assert run_cli("depth", src, "-o", out, "-m", tiny, "--png-level", level, "-q").code == 0
        pixels.append(np.asarray(Image.open(out)))
        sizes.append(out.stat().st_size)
    assert np.array_equal(pixels[0], pixels[1]) and pixels[0].dtype == np.uint16
    assert sizes[1] < sizes[0]


@pytest.mark.parametrize("bad", ["10", "-1"])
def test_png_level_out_of_range_is_a_usage_error(tiny, tmp_path, bad):
    src = photo(tmp_path / "in.png")
    result = run_cli("depth", src, "-o", tmp_path / "d.png", "-m", tiny, "--png-level", bad)
    assert result.code == 2 and "--png-level" in result.err
    assert not (tmp_path / "d.png").exists()


def test_defaults_are_resolved_and_recorded(tiny, tmp_path):
    src = photo(tmp_path / "in.png")
    assert run_cli("depth", src, "-o", tmp_path / "out", "-m", tiny, "-q").code == 0
    settings = _manifest(tmp_path / "out")["runs"][-1]["settings"]
    assert settings["batch_size"] == 1  # on the CPU
    assert settings["workers"] == min(32, len(os.sched_getaffinity(0)))


def test_compile_gives_the_same_depth(tiny, tmp_path):
    """torch.compile on the CPU (Inductor, C++): about a minute, once; values within 1e-4."""
    srcs = [photo(tmp_path / "in" / f"{i}.png", size=(64, 80), seed=i) for i in range(3)]
    plain, compiled = tmp_path / "plain", tmp_path / "compiled"
    assert run_cli("depth", tmp_path / "in", "-o", plain, "-m", tiny, "-f", "npy", "-q").code == 0
    result = run_cli("depth", tmp_path / "in", "-o", compiled, "-m", tiny, "-f", "npy", "--compile", "--batch-size", "2")
    assert result.code == 0, result.err
    assert "dpt: compiling for 2 x 320x384 inputs" in result.err  # 64x80 photos: 320x384 network inputs
    for src in srcs:
        want = np.load(plain / (src.stem + ".npy"))
        got = np.load(compiled / (src.stem + ".npy"))
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_a_bad_encoder_choice_is_one_usage_error(tiny, tmp_path, monkeypatch):
    src = photo(tmp_path / "in.png")
    monkeypatch.setenv("DPT_PNG_ENCODER", "zopfli")
    result = run_cli("depth", src, "-o", tmp_path / "d.png", "-m", tiny)
    assert result.code == 2 and result.err == "dpt: error: DPT_PNG_ENCODER='zopfli': expected pillow, libdeflate or auto\n"
    assert not (tmp_path / "d.png").exists()


def test_pillow_and_libdeflate_write_the_same_pixels(tiny, tmp_path, monkeypatch):
    pytest.importorskip("deflate")
    src = photo(tmp_path / "in.png", size=(90, 70))
    pixels = []
    for backend in ("pillow", "libdeflate"):
        monkeypatch.setenv("DPT_PNG_ENCODER", backend)
        assert run_cli("depth", src, "-o", tmp_path / f"{backend}.png", "-m", tiny, "-q").code == 0
        pixels.append(np.asarray(Image.open(tmp_path / f"{backend}.png")))
    assert np.array_equal(*pixels)
