"""dpt_cli.pipeline.png: every backend writes PNGs that Pillow decodes to exactly the input."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from dpt_cli.pipeline import png

HAS_LIBDEFLATE = png._libdeflate() is not None
BACKENDS = [
    "pillow",
    pytest.param("libdeflate", marks=pytest.mark.skipif(not HAS_LIBDEFLATE, reason="optional `deflate` not installed")),
]
SHAPES = [(1, 1), (1, 37), (41, 1), (17, 23), (64, 97)]
MODES = {np.uint16: ("I;16", "I"), np.uint8: ("L",)}


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> str:
    monkeypatch.setenv("DPT_PNG_ENCODER", request.param)
    assert png.backend() == request.param
    return request.param


def sample(shape: tuple[int, int], dtype, seed: int = 0) -> np.ndarray:
    """(H, W) of `dtype`: random values over the full range, the extremes, and a smooth ramp."""
    top = np.iinfo(dtype).max
    data = np.random.default_rng(seed).integers(0, top, shape, dtype=dtype, endpoint=True)
    data.flat[0] = top
    data.flat[-1] = 0
    if shape[0] > 2 and shape[1] > 2:  # a smooth ramp in the middle, like a depth map's
        h, w = shape[0] // 2, shape[1] // 2
        data[:h, :w] = (np.add.outer(np.arange(h), np.arange(w)) * (top // (h + w))).astype(dtype)
    return data


def decode(blob: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(blob))
    image.load()
    return image


def chunks(blob: bytes) -> list[bytes]:
    """Tags of every chunk, each checked against its CRC (Pillow does not check IDAT's)."""
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    tags, at = [], 8
    while at < len(blob):
        (n,) = struct.unpack(">I", blob[at : at + 4])
        tag, body, (crc,) = blob[at + 4 : at + 8], blob[at + 8 : at + 8 + n], struct.unpack(">I", blob[at + 8 + n : at + 12 + n])
        assert zlib.crc32(tag + body) == crc, tag
        tags.append(tag)
        at += 12 + n
    assert at == len(blob) and tags[0] == b"IHDR" and tags[-1] == b"IEND"
    return tags


@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8], ids=["u16", "u8"])
def test_round_trip(backend, dtype, shape, level):
    data = sample(shape, dtype)
    buf = io.BytesIO()
    png.encode_png(data, buf, level)
    chunks(buf.getvalue())
    image = decode(buf.getvalue())
    assert image.format == "PNG" and image.mode in MODES[dtype] and image.size == (shape[1], shape[0])
    got = np.asarray(image)
    assert got.shape == data.shape and np.array_equal(got, data)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8], ids=["u16", "u8"])
def test_default_level_real_file_and_odd_layouts(backend, dtype, tmp_path):
    """A file on disk at the default level; transposed, strided and big-endian arrays."""
    data = sample((31, 45), dtype, seed=1)
    for i, view in enumerate([data, data.T, data[::2, 1::3], data.astype(data.dtype.newbyteorder(">"))]):
        path = tmp_path / f"{i}.png"
        with open(path, "wb") as f:
            png.encode_png(view, f)
        with Image.open(path) as image:
            assert image.mode in MODES[dtype] and np.array_equal(np.asarray(image), view)


def test_levels_trade_size(backend):
    data = sample((64, 97), np.uint16)
    data[:] = np.add.outer(np.arange(64), np.arange(97)).astype(np.uint16) * 300
    sizes = {}
    for level in (0, png.DEFAULT_LEVEL, 9):
        buf = io.BytesIO()
        png.encode_png(data, buf, level)
        sizes[level] = len(buf.getvalue())
    assert sizes[0] > sizes[png.DEFAULT_LEVEL] >= sizes[9]


@pytest.mark.skipif(not HAS_LIBDEFLATE, reason="optional `deflate` not installed")
def test_libdeflate_splits_long_streams_into_idat_chunks(monkeypatch):
    monkeypatch.setenv("DPT_PNG_ENCODER", "libdeflate")
    monkeypatch.setattr(png, "_MAX_CHUNK", 7)
    data = sample((20, 30), np.uint16)
    buf = io.BytesIO()
    png.encode_png(data, buf, 1)
    assert chunks(buf.getvalue()).count(b"IDAT") > 2
    assert np.array_equal(np.asarray(decode(buf.getvalue())), data)


def test_backend_choice(monkeypatch):
    monkeypatch.setenv("DPT_PNG_ENCODER", "pillow")
    assert png.backend() == "pillow"
    monkeypatch.delenv("DPT_PNG_ENCODER")
    assert png.backend() == ("libdeflate" if HAS_LIBDEFLATE else "pillow")
    monkeypatch.setattr(png, "_libdeflate", lambda: None)  # as without the optional package
    assert png.backend() == "pillow"
    monkeypatch.setenv("DPT_PNG_ENCODER", "libdeflate")
    with pytest.raises(ImportError, match="dpt-cli\\[fast\\]"):
        png.backend()
    monkeypatch.setenv("DPT_PNG_ENCODER", "zopfli")
    with pytest.raises(ValueError, match="DPT_PNG_ENCODER"):
        png.backend()


@pytest.mark.parametrize(
    "data, level",
    [
        (np.zeros((4, 4), np.float32), 1),
        (np.zeros((4, 4), np.int16), 1),
        (np.zeros((4, 4), np.uint32), 1),
        (np.zeros((4, 4, 1), np.uint8), 1),
        (np.zeros(4, np.uint8), 1),
        (np.zeros((0, 4), np.uint16), 1),
        (np.zeros((4, 4), np.uint8), 10),
        (np.zeros((4, 4), np.uint8), -1),
        (np.zeros((4, 4), np.uint8), 1.5),
    ],
)
def test_rejects(backend, data, level):
    with pytest.raises(ValueError):
        png.encode_png(data, io.BytesIO(), level)


def test_import_leaves_the_optional_package_unloaded():
    code = "import sys, dpt_cli.pipeline.png as p; assert 'deflate' not in sys.modules; print(p.DEFAULT_LEVEL)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 0 <= int(out) <= 9
