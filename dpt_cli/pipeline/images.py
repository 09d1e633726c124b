"""Decoding any image Pillow reads into RGB pixels, the way the original scripts see them.

8-bit photos stay uint8 (3 B a pixel; converted to float 0..1 as `u / 255` in float32 by the
preprocessing, on whichever device runs it); other depths become float32 RGB in 0..1.
EXIF orientation is applied. Every mode becomes RGB: L/LA/P/RGBA/CMYK through Pillow (alpha is
dropped, not composited: the network sees the colour channels as stored), 16-bit and 32-bit
integer greyscale scaled by 1/65535, float greyscale clipped to 0..1 (NaN or infinite pixels make
the file an error). Pillow's decompression-bomb guard stays on: an image over
`Image.MAX_IMAGE_PIXELS` is an error for that file. Animated GIF/PNG/WebP and multi-page TIFF:
the first frame is used, and the number of frames is reported so the manifest can say so.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..text import first_line, shown
from .reading import InputError, open_input


ImageError = InputError  # one input that cannot be used; the batch goes on without it

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
MAX_FRAMES_COUNTED = 1000

# Pillow warns between MAX_IMAGE_PIXELS and twice that; `decode` checks the limit itself and makes
# it an error. (warnings.catch_warnings cannot do this per call: it is not thread-safe.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class NonFinitePixels(ValueError):
    def __init__(self, count: int) -> None:
        super().__init__(f"{count} non-finite pixel values")
        self.count = count


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # (H, W, 3) RGB, upright: uint8 0..255 for 8-bit sources, else float32 0..1
    frames: int = 1  # frames in the file; only the first is used

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) float32 RGB in 0..1."""
        return to_float(self.pixels)


def is_image(path: Path) -> bool:
    """Whether Pillow recognises a regular file's content as an image (reads only the header).

    Never blocks: FIFOs, sockets and devices are not images.
    """
    try:
        with open_input(path) as f, Image.open(f):
            return True
    except Exception:
        return False


def decode(path: Path) -> np.ndarray:
    """Read `path` as (H, W, 3) float32 RGB in 0..1, upright per its EXIF orientation."""
    return decode_image(path).rgb


def decode_image(
    path: Path, stream: bool = False, stop: threading.Event | None = None, admit: Callable[[int, int], None] | None = None,
    data: bytes | None = None,
) -> Decoded:
    """Decode the first frame of `path` (see module docstring); `stream`/`stop` as in `open_input`;
    `data`: the image's bytes, already read (`path` then only names it).

    `admit(width, height)` is called once the header is read, before the pixels are decoded: it
    may wait (for memory) or raise.
    """
    if data is not None:
        return _decode(path, io.BytesIO(data), admit)
    with open_input(path, stream, stop) as f:
        return _decode(path, f, admit)


def _decode(path: Path, f: BinaryIO, admit: Callable[[int, int], None] | None) -> Decoded:
    name = shown(path)
    try:
        with Image.open(f) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and im.width * im.height > limit:
                raise Image.DecompressionBombError(f"{im.width * im.height} pixels")
            frames = count_frames(im)
            if admit is not None:
                admit(im.width, im.height)
            im.load()
            pixels = to_pixels(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: over Pillow's pixel limit ({Image.MAX_IMAGE_PIXELS:,} pixels): refused as a possible decompression bomb") from None
    except UnidentifiedImageError:
        what = "empty file" if f.seek(0, os.SEEK_END) == 0 else "not an image Pillow can read"
        raise ImageError(f"{name}: {what}") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except NonFinitePixels as exc:
        raise ImageError(f"{name}: {exc.count:,} pixel value(s) are NaN or infinite") from None
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        raise ImageError(f"{name}: cannot decode ({shown(first_line(exc))})") from None
    except Exception as exc:  # a decoder's surprise on a malformed file (KeyError, TypeError, ...)
        raise ImageError(f"{name}: cannot decode ({type(exc).__name__}: {shown(exc)})") from None
    return Decoded(pixels, frames)


def count_frames(im: Image.Image, cap: int = MAX_FRAMES_COUNTED) -> int:
    """Frames in an animated or multi-page file, counted up to `cap` (counting walks the file:
    bounded, a hostile GIF of millions of frames costs no more than `cap`); 1 for still images
    or when a malformed later frame stops the count. Leaves `im` on its first frame."""
    if not getattr(im, "is_animated", False):
        return 1
    count = 1
    try:
        while count < cap:
            im.seek(count)
            count += 1
    except EOFError:
        pass
    except Exception:  # a malformed later frame: the first one may still be fine
        pass
    finally:
        im.seek(0)
    return count


def to_pixels(im: Image.Image) -> np.ndarray:
    """(H, W, 3) RGB: uint8 for 8-bit modes, float32 0..1 for 16-bit, 32-bit and float greyscale."""
    if im.mode in _SIXTEEN_BIT:
        grey = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if im.mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        finite = np.isfinite(grey)
        if not finite.all():
            raise NonFinitePixels(int(finite.size - finite.sum()))
        grey = np.clip(grey, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, RGBA (alpha dropped), CMYK, 1, YCbCr, ...
    return np.asarray(im)


# u / 255 in float32 for every byte value: the original scripts' conversion, as a table so that
# every device gives these exact values (a GPU divides by a scalar as a multiply by 1/255)
UNIT = np.arange(256, dtype=np.float32) / np.float32(255.0)
UNIT.flags.writeable = False


def to_float(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or float32 pixels -> float32 RGB in 0..1 (float input returned as is)."""
    if pixels.dtype != np.uint8:
        return pixels
    return np.divide(pixels, np.float32(255.0), dtype=np.float32)  # == UNIT[pixels], 4x faster


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) pixels -> uint8, for pictures that show the photo (8-bit sources unchanged)."""
    if pixels.dtype == np.uint8:
        return pixels
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
