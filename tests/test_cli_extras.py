"""What users of peer tools ask for: --range auto (one range for a folder), EXR and PLY outputs."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from cli import run_cli
from test_exr_ply import _read_ply as read_ply


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def photos(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb = np.random.default_rng(i).integers(0, 256, (30 + 4 * i, 40, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"f{i}.png")
    return folder


def test_range_auto_normalises_every_file_over_the_runs_range(tiny, tmp_path):
    src = photos(tmp_path / "in")
    result = run_cli("depth", src, "-o", tmp_path / "out", "-f", "png16,npy,color", "--range", "auto", "-m", tiny)
    assert result.code == 0, result.err
    raws = [np.load(tmp_path / "out" / f"f{i}.npy") for i in range(3)]
    lo, hi = min(float(r.min()) for r in raws), max(float(r.max()) for r in raws)
    for i, raw in enumerate(raws):
        want = (np.clip((raw - lo) / (hi - lo), 0, 1) * 65535).astype(np.uint16)  # the PNG writer's rule
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"f{i}.png")), want)
    records = json.loads((tmp_path / "out" / "dpt-run.json").read_text())["files"]
    assert [(r["min"], r["max"]) for r in records] == [(lo, hi)] * 3
    assert sorted(os.listdir(tmp_path / "out")) == sorted(  # the kept raw maps are gone
        ["dpt-run.json"] + [f"f{i}{s}" for i in range(3) for s in (".png", ".npy", ".color.png")])
    assert "over the run's range" in result.err


def test_range_auto_per_image_differs_from_per_run(tiny, tmp_path):
    src = photos(tmp_path / "in")
    run_cli("depth", src, "-o", tmp_path / "own", "-m", tiny)
    run_cli("depth", src, "-o", tmp_path / "auto", "-m", tiny, "--range", "auto")
    own = [np.asarray(Image.open(tmp_path / "own" / f"f{i}.png")) for i in range(3)]
    auto = [np.asarray(Image.open(tmp_path / "auto" / f"f{i}.png")) for i in range(3)]
    assert all(o.min() == 0 and o.max() == 65535 for o in own)
    assert sum(a.max() == 65535 for a in auto) == 1 and sum(a.min() == 0 for a in auto) >= 1


def test_exr_holds_the_raw_values(tiny, tmp_path):
    src = photos(tmp_path / "in", 1) / "f0.png"
    assert run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", tiny).code == 0
    result = run_cli("depth", src, "-o", tmp_path / "d.exr", "-m", tiny)
    assert result.code == 0, result.err
    with OpenEXR.File(str(tmp_path / "d.exr"), separate_channels=True) as f:
        values = f.channels()["Y"].pixels
    assert values.dtype == np.float32 and np.array_equal(values, np.load(tmp_path / "d.npy"))


def test_ply_back_projects_with_the_field_of_view(tiny, tmp_path):
    src = photos(tmp_path / "in", 1) / "f0.png"
    assert run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", tiny).code == 0
    result = run_cli("depth", src, "-o", tmp_path / "d.ply", "--fov", "60", "-m", tiny)
    assert result.code == 0 and "up to an unknown scale and shift" in result.err, result.err
    header, vertices = read_ply(tmp_path / "d.ply")
    inverse = np.load(tmp_path / "d.npy")
    h, w = inverse.shape
    f = (w / 2) / math.tan(math.radians(30))
    v, u = np.nonzero(inverse > 0)
    z = 1.0 / inverse[v, u]
    want = np.stack([(u + 0.5 - w / 2) * z / f, (v + 0.5 - h / 2) * z / f, z], axis=1)
    got = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    rgb = np.asarray(Image.open(src))[v, u]
    assert np.array_equal(np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1), rgb)
    assert any("scale and shift" in line for line in header)


def test_exr_without_openexr_is_a_usage_error(tmp_path, monkeypatch):
    from dpt_cli.pipeline import exr

    monkeypatch.setattr(exr, "available", lambda: False)
    src = photos(tmp_path / "in", 1) / "f0.png"
    result = run_cli("depth", src, "-o", tmp_path / "d.exr", "-m", "/nonexistent")
    assert result.code == 2 and "pip install 'dpt-cli[exr]'" in result.err, result.err


def test_range_auto_removes_private_folders_of_killed_runs(tiny, tmp_path):
    src = photos(tmp_path / "in", 1)
    stale = tmp_path / "out" / ".dpt-range-999999999-abc"  # no such pid
    stale.mkdir(parents=True)
    (stale / "0.depth.npy").write_bytes(b"x")
    assert run_cli("depth", src, "-o", tmp_path / "out", "--range", "auto", "-m", tiny).code == 0
    assert not any(name.startswith(".dpt-range-") for name in os.listdir(tmp_path / "out"))


def test_range_auto_keeps_a_live_runs_folder(tiny, tmp_path):
    src = photos(tmp_path / "in", 1)
    live = tmp_path / "out" / ".dpt-range-0123456789abcdef"  # another run's, with other settings
    live.mkdir(parents=True)
    (live / "owner").write_text(str(os.getpid()))
    assert run_cli("depth", src, "-o", tmp_path / "out", "--range", "auto", "-m", tiny).code == 0
    assert live.is_dir()
