"""EXR and PLY writers: exact round trips, atomic writes, and the pinhole geometry checked by hand."""

from __future__ import annotations

import builtins
import errno
import math
import os
from contextlib import contextmanager

import numpy as np
import pytest

import OpenEXR  # the [exr] extra, installed with the test environment: these tests must run

from dpt_cli.errors import UsageError
from dpt_cli.pipeline import exr, ply


def _read_exr(path) -> np.ndarray:
    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    assert list(channels) == ["Y"]
    assert channels["Y"].type() == OpenEXR.FLOAT
    return channels["Y"].pixels


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("by_name", [False, True], ids=["stream", "by-name"])
@pytest.mark.parametrize("shape", [(7, 13), (1, 1), (64, 48), (3, 1000)])
def test_exr_round_trip_is_bitwise(tmp_path, monkeypatch, shape, by_name):
    if by_name:  # the path taken with bindings that cannot write to a stream
        monkeypatch.setattr(exr, "_writes_streams", lambda module: False)
    depth = (np.random.default_rng(0).standard_normal(shape) * 1e3).astype(np.float32)
    depth.flat[:4] = [np.nan, np.inf, -0.0, 1e-42][: depth.size]  # specials and a subnormal survive
    path = tmp_path / "d.exr"
    exr.write_exr(depth, path)
    assert _same_bits(_read_exr(path), depth)
    assert os.listdir(tmp_path) == ["d.exr"]  # no temporary left behind
    header = OpenEXR.File(str(path), header_only=True).header()
    assert header["compression"] == OpenEXR.ZIP_COMPRESSION


def test_exr_takes_non_contiguous_and_float64(tmp_path):
    depth = np.random.default_rng(1).random((20, 30))
    exr.write_exr(depth[:, ::3], tmp_path / "a.exr")
    assert _same_bits(_read_exr(tmp_path / "a.exr"), depth[:, ::3].astype(np.float32))


@pytest.mark.parametrize("by_name", [False, True], ids=["stream", "by-name"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exr_failed_write_leaves_nothing(tmp_path, monkeypatch, error, by_name):
    if by_name:
        monkeypatch.setattr(exr, "_writes_streams", lambda module: False)
    real = OpenEXR.File

    class Failing:  # the bindings' class cannot be patched; stand in for the written image
        def __init__(self, *args):
            self.image = real(*args)

        def write(self, target):
            if hasattr(target, "write"):
                target.write(b"partial")
            else:
                self.image.write(target)  # a whole file under the temporary name, then fail
            raise error("disk on fire")

    monkeypatch.setattr(OpenEXR, "File", Failing)
    with pytest.raises(error):
        exr.write_exr(np.ones((5, 5), np.float32), tmp_path / "d.exr")
    assert os.listdir(tmp_path) == []


class _FullDisk:
    """A file that takes one write, then fails like a full disk (the bindings call write/tell/seek)."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, data):
        self.writes += 1
        if self.writes > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def tell(self):
        return self.f.tell()

    def seek(self, *args):
        return self.f.seek(*args)


def _fill_disk(module, monkeypatch):
    real = module.atomic_open

    @contextmanager
    def full(path):
        with real(path) as f:
            yield _FullDisk(f)

    monkeypatch.setattr(module, "atomic_open", full)


def test_exr_disk_full_inside_the_bindings(tmp_path, monkeypatch):
    _fill_disk(exr, monkeypatch)
    path = tmp_path / "d.exr"
    with pytest.raises(OSError) as caught:
        exr.write_exr(np.random.default_rng(3).random((300, 200)).astype(np.float32), path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert os.listdir(tmp_path) == []


def test_exr_stream_support_is_detected():
    assert exr._writes_streams(OpenEXR) == ("stream" in OpenEXR.File.write.__doc__)


def test_exr_rejects_non_2d(tmp_path):
    with pytest.raises(ValueError):
        exr.write_exr(np.ones((2, 2, 1), np.float32), tmp_path / "d.exr")


def test_require_without_openexr(monkeypatch):
    real_import = builtins.__import__

    def no_openexr(name, *args, **kwargs):
        if name == "OpenEXR":
            raise ImportError("No module named 'OpenEXR'")
        return real_import(name, *args, **kwargs)

    exr._openexr.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_openexr)
    try:
        assert not exr.available()
        with pytest.raises(UsageError, match=r"pip install 'dpt-cli\[exr\]'"):
            exr.require()
    finally:
        monkeypatch.undo()
        exr._openexr.cache_clear()
    assert exr.available()
    exr.require()


def _read_ply(path) -> tuple[list[str], np.ndarray]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    return header, np.frombuffer(data[end:], dtype=ply.VERTEX)


def test_from_fov():
    k = ply.Intrinsics.from_fov(90, 100, 60)
    assert k.fx == pytest.approx(50) and k.fy == pytest.approx(50)
    assert (k.cx, k.cy) == (50, 30)
    with pytest.raises(ValueError):
        ply.Intrinsics.from_fov(180, 100, 60)


def test_ply_plane_matches_pinhole_by_hand(tmp_path):
    h, w = 6, 9
    k = ply.Intrinsics(fx=7.0, fy=5.0, cx=4.2, cy=2.9)
    z = np.full((h, w), 2.5, np.float32) + np.arange(w, dtype=np.float32) * 0.25  # a tilted plane
    z[1, 2], z[3, 4], z[0, 0], z[5, 8] = np.nan, 0.0, -1.0, np.inf
    rgb = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    n = ply.write_ply(z, rgb, tmp_path / "c.ply", k, comments=["units: metres", "two\nlines"])
    header, v = _read_ply(tmp_path / "c.ply")
    assert header == [
        "ply", "format binary_little_endian 1.0", "comment units: metres", "comment two lines",
        f"element vertex {n}", "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue", "end_header",
    ]
    kept = [(u, r) for r in range(h) for u in range(w) if math.isfinite(z[r, u]) and z[r, u] > 0]
    assert n == len(v) == len(kept) == h * w - 4
    for (u, r), p in zip(kept, v):
        zz = float(z[r, u])
        assert p["x"] == pytest.approx((u + 0.5 - k.cx) * zz / k.fx, rel=1e-6, abs=1e-6)
        assert p["y"] == pytest.approx((r + 0.5 - k.cy) * zz / k.fy, rel=1e-6, abs=1e-6)
        assert p["z"] == zz
        assert (p["red"], p["green"], p["blue"]) == tuple(rgb[r, u])
    assert os.listdir(tmp_path) == ["c.ply"]


def test_points_centre_pixel_is_on_axis():
    k = ply.Intrinsics.from_fov(60, 5, 3)  # odd sizes: the middle pixel's centre is the image centre
    xyz, mask = ply.points(np.ones((3, 5), np.float32), k)
    assert mask.all() and xyz.shape == (15, 3) and xyz.dtype == np.float32
    assert tuple(xyz[7]) == (0, 0, 1)
    # the left edge of the image (u = 0, not pixel 0's centre) is on the edge of the field of view
    assert -k.cx / k.fx == pytest.approx(-math.tan(math.radians(30)))


def test_ply_float_colours_and_empty_cloud(tmp_path):
    k = ply.Intrinsics.from_fov(60, 2, 1)
    rgb = np.array([[[0.0, 0.5, 1.0], [2.0, -1.0, np.nan]]], np.float32)
    assert ply.write_ply(np.ones((1, 2), np.float32), rgb, tmp_path / "a.ply", k) == 2
    _, v = _read_ply(tmp_path / "a.ply")
    assert [tuple(p)[3:] for p in v] == [(0, 128, 255), (255, 0, 0)]
    assert ply.write_ply(np.zeros((1, 2), np.float32), rgb, tmp_path / "b.ply", k) == 0
    header, v = _read_ply(tmp_path / "b.ply")
    assert "element vertex 0" in header and len(v) == 0
    with pytest.raises(ValueError):
        ply.write_ply(np.ones((2, 2), np.float32), rgb, tmp_path / "c.ply", k)


def test_ply_failed_write_leaves_nothing(tmp_path, monkeypatch):
    _fill_disk(ply, monkeypatch)  # the header goes through, the body fails
    path = tmp_path / "c.ply"
    with pytest.raises(OSError) as caught:
        ply.write_ply(np.ones((2, 2), np.float32), np.zeros((2, 2, 3), np.uint8), path,
                      ply.Intrinsics.from_fov(60, 2, 2))
    assert caught.value.filename == str(path)
    assert os.listdir(tmp_path) == []


def test_depth_from_inverse():
    d = np.array([[2.0, 0.0, -1.0, np.nan, 1e-45, np.inf]], np.float32)
    z = ply.depth_from_inverse(d)
    assert z.dtype == np.float32 and z[0, 0] == 0.5
    assert np.isnan(z[0, 1:4]).all()
    _, mask = ply.points(z, ply.Intrinsics.from_fov(60, 6, 1))
    assert mask.tolist() == [[True, False, False, False, False, False]]  # 1/tiny = inf, 1/inf = 0: dropped
