"""Ranges along a sequence: one range, a running range (--smooth), and scale/shift alignment (--align)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli import run_cli
from dpt_cli.pipeline import sequences
from video import make_clip, pattern, static_clip


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def test_fit_recovers_scale_and_shift_despite_moved_content():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 5, (200, 300))
    y = 2.5 * x + 0.3
    y[:30] = rng.uniform(0, 20, (30, 300))  # 10 % of the pixels changed: something moved
    s, t = sequences.fit(x, y)
    assert abs(s - 2.5) < 1e-9 and abs(t - 0.3) < 1e-9


def test_fit_falls_back_to_identity_when_degenerate():
    flat = np.ones((10, 10))
    assert sequences.fit(flat, flat * 3) == (1.0, 0.0)
    assert sequences.fit(np.arange(100.0).reshape(10, 10), -np.arange(100.0).reshape(10, 10)) == (1.0, 0.0)


def test_align_maps_every_frame_onto_the_first():
    base = np.random.default_rng(1).uniform(0.5, 3, (64, 80))
    drift = [(1.0, 0.0), (1.7, -0.2), (0.6, 0.9), (2.2, 0.05)]
    maps = [s * base + t for s, t in drift]
    for (s, t), m in zip(sequences.align(maps), maps):
        assert np.allclose(s * m + t, base, atol=1e-9)


def test_normalise_modes():
    ranges = [(0.0, 4.0), (1.0, 8.0), (2.0, 6.0), (0.5, 5.0)]
    assert {(n.lo, n.hi) for n in sequences.normalise(ranges)} == {(0.0, 8.0)}
    assert [(n.lo, n.hi) for n in sequences.normalise(ranges, sequences.OWN)] == ranges
    assert {(n.lo, n.hi) for n in sequences.normalise(ranges, sequences.FIXED, fixed=(1.0, 2.0))} == {(1.0, 2.0)}
    smooth = [(n.lo, n.hi) for n in sequences.normalise(ranges, smooth=3)]
    assert smooth == [(0.5, 6.0), (1.0, 6.0), (7 / 6, 19 / 3), (1.25, 5.5)]
    moved = sequences.normalise(ranges, transforms=[(2.0, 1.0)] * 4)
    assert (moved[0].lo, moved[0].hi, moved[0].scale, moved[0].shift) == (1.0, 17.0, 2.0, 1.0)


def test_sequence_photos_share_one_range(tiny, tmp_path):
    for k in range(5):
        Image.fromarray(pattern(k, (48, 64))).save(tmp_path / f"{k}.png")
    result = run_cli("depth", tmp_path, "--sequence", "-o", tmp_path / "out", "-m", tiny, "-f", "png16,npy")
    assert result.code == 0, result.err
    raws = [np.load(tmp_path / "out" / f"{k}.npy") for k in range(5)]
    records = json.loads((tmp_path / "out" / "dpt-run.json").read_text())["files"]
    assert {(r["min"], r["max"]) for r in records} == {(min(float(r.min()) for r in raws), max(float(r.max()) for r in raws))}


def test_smooth_gives_each_frame_the_running_mean_of_the_frame_ranges(tiny, tmp_path):
    clip = tmp_path / "c.mkv"
    make_clip(clip, 12, (48, 64))
    result = run_cli("depth", clip, "-o", tmp_path / "out", "-m", tiny, "--smooth", "5", "-f", "png16,npy")
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "out" / "dpt-run.json").read_text())
    entry = doc["runs"][-1]["videos"][0]
    lows, highs = np.array(entry["frame_min"]), np.array(entry["frame_max"])
    for r in doc["files"]:
        window = slice(max(0, r["frame"] - 2), r["frame"] + 3)
        assert r["min"] == pytest.approx(lows[window].mean(), abs=1e-12) and r["max"] == pytest.approx(highs[window].mean(), abs=1e-12)


def test_align_writes_each_frame_scaled_and_shifted(tiny, tmp_path):
    """A static camera whose exposure flickers: --align leaves frame 0 as it is and makes every
    other frame an affine copy of its raw map, with less frame-to-frame change."""
    clip = tmp_path / "static.mkv"
    static_clip(clip, 8, (48, 64))
    for name, extra in (("raw", ()), ("aligned", ("--align",))):
        result = run_cli("depth", clip, "-o", tmp_path / name, "-m", tiny, "-f", "npy", *extra)
        assert result.code == 0, result.err
    raw = [np.load(tmp_path / "raw" / "static" / f"{k:06d}.npy").astype(np.float64) for k in range(8)]
    aligned = [np.load(tmp_path / "aligned" / "static" / f"{k:06d}.npy").astype(np.float64) for k in range(8)]
    assert np.array_equal(raw[0], aligned[0])
    for r, a in zip(raw[1:], aligned[1:]):
        s, t = np.polyfit(r.ravel(), a.ravel(), 1)
        assert s > 0 and np.abs(s * r + t - a).max() <= 1e-5 * np.abs(a).max()

    def flicker(maps):
        return np.mean([np.abs(b - a).mean() for a, b in zip(maps, maps[1:])]) / np.mean([np.abs(m).mean() for m in maps])

    assert flicker(aligned) < flicker(raw)

