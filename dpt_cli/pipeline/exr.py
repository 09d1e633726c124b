"""OpenEXR output of a raw float depth map: one 32-bit FLOAT channel "Y", ZIP-compressed (lossless).

"Y" is the channel name EXR readers take for a greyscale image. The pixels are the float32 values
exactly as given, NaN and infinities included, so a reader gets back the same bits.

The `OpenEXR` package (the official bindings, `pip install 'dpt-cli[exr]'`) is optional and imported
on first use only. Its `OpenEXR.File` API (3.3 and later) is used; bindings that can write to a
binary stream (newer 3.x) write through `atomic_open`, older ones write a temporary file by name in
the same folder, named the way `atomic_open` names its own, and rename it into place.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import UsageError
from .atomic import atomic_open, atomic_path

CHANNEL = "Y"
INSTALL_HINT = "-f exr needs the OpenEXR package (3.3 or later): pip install 'dpt-cli[exr]'"


@functools.cache
def _openexr() -> ModuleType | None:
    """The `OpenEXR` module when it is installed and has the `File` API (3.3+); None otherwise."""
    try:
        import OpenEXR
    except ImportError:
        return None
    # 3.2 and earlier only have the old InputFile/OutputFile API, which this module does not use.
    return OpenEXR if hasattr(OpenEXR, "File") else None


def available() -> bool:
    """Whether EXR files can be written here (checked once per process)."""
    return _openexr() is not None


def require() -> None:
    """Raise UsageError, with the install command, when EXR output is not available."""
    if not available():
        raise UsageError(INSTALL_HINT)


def write_exr(depth: np.ndarray, path: Path) -> None:
    """Write a (H, W) depth map, in the units it has, as a single-channel FLOAT EXR at `path`.

    The values are converted to float32 (a no-op for float32 input) and stored bit for bit. The
    file appears complete under `path` or not at all, as with every output of the project.
    """
    if depth.ndim != 2 or 0 in depth.shape:
        raise ValueError(f"expected a non-empty (H, W) depth map, got shape {depth.shape}")
    require()
    OpenEXR = _openexr()
    pixels = np.ascontiguousarray(depth, dtype=np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    image = OpenEXR.File(header, {CHANNEL: OpenEXR.Channel(CHANNEL, pixels)})
    if _writes_streams(OpenEXR):
        with atomic_open(path) as f:
            image.write(f)
    else:
        _write_by_name(image, path)


@functools.cache
def _writes_streams(OpenEXR: ModuleType) -> bool:
    """Whether `File.write` takes a binary stream, not only a file name.

    Read from the bindings' own overload signatures, so that nothing is written to find out; when
    in doubt the answer is False, and the by-name path (correct with every version) is taken.
    """
    return "stream" in (getattr(OpenEXR.File.write, "__doc__", None) or "")


def _write_by_name(image: object, path: Path) -> None:
    """`image.write(name)` to a temporary name beside `path`, renamed over it once complete (for
    bindings that can only write to a file name)."""
    with atomic_path(path) as tmp:
        image.write(tmp)
