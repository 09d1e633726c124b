"""Decoding: every image mode to RGB 0..1, EXIF orientation, and one-line errors for bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dpt_cli.pipeline.images import ImageError, decode


def _save(tmp_path, image: Image.Image, name: str, **params):
    path = tmp_path / name
    image.save(path, **params)
    return path


def test_rgb_and_grey_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    got = decode(_save(tmp_path, Image.fromarray(rgb), "rgb.png"))
    assert got.dtype == np.float32 and got.shape == (20, 30, 3)
    assert np.array_equal(got, rgb / np.float32(255))
    grey = decode(_save(tmp_path, Image.fromarray(rgb[..., 0]), "l.png"))
    assert np.array_equal(grey[..., 2], rgb[..., 0] / np.float32(255))


@pytest.mark.parametrize("mode", ["LA", "P", "RGBA", "CMYK", "1", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8))
    image = base.convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        image = Image.fromarray(np.full((16, 24), 32768, dtype=np.uint16))
    elif mode == "I":
        image = Image.fromarray(np.full((16, 24), 65535, dtype=np.int32))
    elif mode == "F":
        image = Image.fromarray(np.full((16, 24), 0.25, dtype=np.float32))
    name = {"CMYK": "x.jpg", "F": "x.tiff", "I": "x.tiff"}.get(mode, "x.png")
    got = decode(_save(tmp_path, image, name))
    assert got.shape == (16, 24, 3) and got.min() >= 0 and got.max() <= 1
    if mode == "I;16":
        assert np.allclose(got, 32768 / 65535)
    elif mode == "I":
        assert np.allclose(got, 1.0)
    elif mode == "F":
        assert np.allclose(got, 0.25)


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent red stays red
    got = decode(_save(tmp_path, Image.fromarray(rgba), "a.png"))
    assert np.allclose(got[..., 0], 200 / 255) and np.allclose(got[..., 1:], 0)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :5] = 255  # a bright left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(tmp_path, Image.fromarray(pixels), "r.jpg", exif=exif, quality=100)
    got = decode(path)
    assert got.shape == (20, 10, 3)
    assert got[:5].mean() > 0.9 and got[-5:].mean() < 0.1  # the bright edge is now on top


@pytest.mark.parametrize(
    "kind, message",
    [("empty", "empty file"), ("text", "not an image Pillow can read"), ("truncated", "cannot decode"), ("missing", "no such file"), ("dir", "is a directory")],
)
def test_bad_files(tmp_path, kind, message):
    path = tmp_path / "x.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("definitely not a picture")
    elif kind == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "dir":
        path.mkdir()
    with pytest.raises(ImageError, match=message) as info:
        decode(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_pixel_limit_is_a_per_file_error(tmp_path, monkeypatch):
    path = _save(tmp_path, Image.new("RGB", (100, 100)), "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(ImageError, match="pixel limit"):
        decode(path)


def test_permission_denied_is_reported(tmp_path, monkeypatch):
    path = _save(tmp_path, Image.new("RGB", (4, 4)), "p.png")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageError, match="permission denied"):
        decode(path)
