"""Greyscale PNG encoding of depth maps: 16-bit for uint16 arrays, 8-bit for uint8.

Two backends give exactly the same pixels, and both release the GIL while they compress:
  - "libdeflate": the optional `deflate` package (`pip install 'dpt-cli[fast]'`): numpy applies the
    PNG "Up" filter to every row, libdeflate compresses: 2.5-3.3x Pillow's speed at the same
    level, files at most 2% larger and mostly 3-11% smaller (bench/bench_encode.py);
  - "pillow": Pillow's own encoder (adaptive filters, the zlib it is linked with); always there.
The fast one is used when importable, unless DPT_PNG_ENCODER=pillow asks for Pillow.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable
from types import ModuleType
from typing import BinaryIO

import numpy as np
from PIL import Image

# Level 2, from bench/bench_encode.py on 1024x768 maps (one thread, 2-core x86, Linux Pillow 13 on
# the system zlib 1.2.13): Pillow takes 35-63 ms at level 2 against 82-290 ms at its default 6, for
# 16-bit files 1-3% larger (8-bit ones, ~0.1 MB, 30% larger). Level 1 saves only ~10% more time for
# another 1-3% (and zlib-ng, bundled in Pillow's macOS and Windows wheels, makes level 1 its "quick"
# strategy: 20-70% larger); level 3 takes ~1.5x as long for 1-2% less. libdeflate at level 2: 14-19 ms,
# files 5% smaller to 3% larger than Pillow's at level 6 (level 1: 10-13 ms, up to 8% larger).
DEFAULT_LEVEL = 2

_ENV = "DPT_PNG_ENCODER"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_CHUNK = 1 << 30  # IDAT pieces: the format caps a chunk at 2**31 - 1 bytes


@functools.cache
def _libdeflate() -> ModuleType | None:
    """The optional `deflate` module (libdeflate), imported on first use; None when not installed."""
    try:
        import deflate
    except ImportError:
        return None
    return deflate


def backend() -> str:
    """The encoder `encode_png` uses now: "libdeflate" or "pillow" (DPT_PNG_ENCODER=pillow forces it)."""
    choice = os.environ.get(_ENV, "").strip().lower()
    if choice not in ("", "auto", "pillow", "libdeflate"):
        raise ValueError(f"{_ENV}={choice!r}: expected pillow, libdeflate or auto")
    if choice == "pillow":
        return "pillow"
    if _libdeflate() is None:
        if choice == "libdeflate":
            raise ImportError(f"{_ENV}=libdeflate needs the `deflate` package: pip install 'dpt-cli[fast]'")
        return "pillow"
    return "libdeflate"


def encode_png(data: np.ndarray, f: BinaryIO, level: int = DEFAULT_LEVEL) -> None:
    """Write `data`, (H, W) uint16 or uint8 with H, W >= 1, to the open binary file `f` as a PNG.

    uint16 becomes a 16-bit greyscale PNG (Pillow reads it as mode I;16), uint8 an 8-bit one
    (mode L). `level` is the zlib-style effort, 0 (stored, no compression) to 9 (smallest).
    """
    if data.ndim != 2 or data.dtype.kind != "u" or data.dtype.itemsize not in (1, 2):
        raise ValueError(f"expected an (H, W) uint8 or uint16 array, got {data.dtype} {data.shape}")
    if data.size == 0:
        raise ValueError(f"a PNG needs at least one pixel, got shape {data.shape}")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 9:
        raise ValueError(f"PNG compression level must be an integer 0..9, got {level!r}")
    if backend() == "pillow":
        native = np.ascontiguousarray(data, dtype=np.uint16 if data.dtype.itemsize == 2 else np.uint8)
        Image.fromarray(native).save(f, format="PNG", compress_level=int(level))  # I;16 or L
    else:
        _write_libdeflate(data, f, int(level))


def _write_libdeflate(data: np.ndarray, f: BinaryIO, level: int) -> None:
    """PNG of (H, W) `data` with every row Up-filtered, one zlib stream compressed by libdeflate."""
    deflate = _libdeflate()
    assert deflate is not None
    h, w = data.shape
    bits = 8 * data.dtype.itemsize
    # rows as big-endian bytes, (H, W * bytes per pixel), each prefixed by its filter-type byte:
    # 2 (Up) stores each byte minus the one above it, modulo 256 (the first row: minus zero)
    rows = np.ascontiguousarray(data, dtype=">u2" if bits == 16 else np.uint8).view(np.uint8).reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    stream = memoryview(deflate.zlib_compress(filtered, level))
    del filtered
    header = struct.pack(">IIBBBBB", w, h, bits, 0, 0, 0, 0)  # colour type 0: greyscale
    f.write(_SIGNATURE)
    _chunk(f, b"IHDR", header, deflate.crc32)
    for start in range(0, len(stream), _MAX_CHUNK):
        _chunk(f, b"IDAT", stream[start : start + _MAX_CHUNK], deflate.crc32)
    _chunk(f, b"IEND", b"", deflate.crc32)


def _chunk(f: BinaryIO, tag: bytes, body: bytes | memoryview, crc32: Callable[[bytes | memoryview, int], int]) -> None:
    """One PNG chunk: length, tag, body, CRC-32 of tag + body."""
    f.write(struct.pack(">I", len(body)))
    f.write(tag)
    f.write(body)
    f.write(struct.pack(">I", crc32(body, crc32(tag, 0)) & 0xFFFFFFFF))
