"""Encoders for every output format; each writes atomically to its path.

Depth pictures and 16/8-bit PNGs are min-max normalised per image (or over a fixed --range);
raw formats (.npy, .pfm, .tiff) hold the prediction itself: inverse relative depth for relative
models, metres for metric ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .. import ade20k
from . import png
from .atomic import atomic_open

PICTURE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".png": "PNG"}


def normalise(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1], clipping; all zeros when the range is empty (as the original does)."""
    if not hi - lo > np.finfo(np.float32).eps:
        return np.zeros_like(depth, dtype=np.float32)
    return np.clip((depth - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def quantise(unit: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] -> uint16/uint8 full range, truncating like the original's `astype`."""
    top = 2**bits - 1
    return (unit * top).astype(np.uint16 if bits == 16 else np.uint8)


def _save(image: Image.Image, path: Path, fmt: str, **params) -> None:
    with atomic_open(path) as f:
        image.save(f, format=fmt, **params)


def write_png(data: np.ndarray, path: Path, level: int | None = None) -> None:
    """A (H, W) uint16 or uint8 map as a 16- or 8-bit greyscale PNG (lossless at every level)."""
    with atomic_open(path) as f:
        png.encode_png(data, f, png.DEFAULT_LEVEL if level is None else level)


def write_npy(depth: np.ndarray, path: Path) -> None:
    # header, then the bytes through the file object: numpy's own tofile() reports a short write
    # as "N requested and M written", hiding the OS reason (no space left on device, ...)
    data = np.ascontiguousarray(depth, dtype=np.float32)
    with atomic_open(path) as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(data))
        f.write(memoryview(data).cast("B"))


def write_pfm(depth: np.ndarray, path: Path) -> None:
    """Greyscale PFM, little-endian (scale -1), rows stored bottom to top."""
    data = np.flipud(depth.astype("<f4"))
    with atomic_open(path) as f:
        f.write(f"Pf\n{depth.shape[1]} {depth.shape[0]}\n-1\n".encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())


def write_tiff(depth: np.ndarray, path: Path) -> None:
    _save(Image.fromarray(depth.astype(np.float32)), path, "TIFF")  # mode F


def write_picture(rgb: np.ndarray, path: Path) -> None:
    fmt = PICTURE_FORMATS.get(path.suffix.lower(), "PNG")
    params = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    _save(Image.fromarray(rgb), path, fmt, **params)


def side_by_side(photo: np.ndarray, picture: np.ndarray) -> np.ndarray:
    return np.concatenate([photo, picture], axis=1)


def write_labels(labels: np.ndarray, path: Path, num_classes: int) -> None:
    """Class ids as pixel values: a palette PNG (ADE20K colours) up to 256 classes, else 16-bit grey."""
    if num_classes <= 256:
        data = np.ascontiguousarray(labels, dtype=np.uint8)
        image = Image.frombytes("P", (data.shape[1], data.shape[0]), data.tobytes())
        image.putpalette(np.asarray(palette(num_classes), dtype=np.uint8).reshape(-1).tolist())
    else:
        image = Image.fromarray(labels.astype(np.uint16))
    _save(image, path, "PNG")


def palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Colour of each class id: ADE20K's for the first 150, a fixed pseudo-random colour beyond."""
    colours = ade20k.palette()[:num_classes]
    rng = np.random.default_rng(0)
    while len(colours) < num_classes:
        colours.append(tuple(int(c) for c in rng.integers(0, 256, 3)))
    return colours


def overlay(photo: np.ndarray, labels: np.ndarray, num_classes: int, alpha: float) -> np.ndarray:
    colours = np.asarray(palette(num_classes), dtype=np.float32)[labels]
    return (photo.astype(np.float32) * (1 - alpha) + colours * alpha + 0.5).astype(np.uint8)
