"""Decoding any image Pillow reads into float RGB in 0..1, the way the original scripts see it.

EXIF orientation is applied. Every mode becomes RGB: L/LA/P/RGBA/CMYK through Pillow (alpha is
dropped, not composited: the network sees the colour channels as stored), 16-bit and 32-bit
integer greyscale scaled by 1/65535, float greyscale clipped to 0..1. Pillow's decompression-bomb
guard stays on: an image over `Image.MAX_IMAGE_PIXELS` is an error for that file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DPTError


class ImageError(DPTError):
    """One input that cannot be used; the batch goes on without it."""


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# Pillow warns between MAX_IMAGE_PIXELS and twice that; `decode` checks the limit itself and makes
# it an error. (warnings.catch_warnings cannot do this per call: it is not thread-safe.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def is_image(path: Path) -> bool:
    """Whether Pillow recognises the file's content as an image (reads only the header)."""
    try:
        with Image.open(path):
            return True
    except Exception:
        return False


def decode(path: Path) -> np.ndarray:
    """Read `path` as (H, W, 3) float32 RGB in 0..1, upright per its EXIF orientation."""
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and im.width * im.height > limit:
                raise Image.DecompressionBombError(f"{im.width * im.height} pixels")
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb_float(im)
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: over Pillow's pixel limit ({Image.MAX_IMAGE_PIXELS:,} pixels): refused as a possible decompression bomb") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        what = "empty file" if size == 0 else "not an image Pillow can read"
        raise ImageError(f"{path}: {what}") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def to_rgb_float(im: Image.Image) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT:
        grey = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if im.mode == "F":
        grey = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, RGBA (alpha dropped), CMYK, 1, YCbCr, ...
    return np.asarray(im, dtype=np.float32) / 255.0


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float 0..1 -> uint8, for pictures that show the photo."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
