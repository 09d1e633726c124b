"""Small generated clips for the video tests: written into tmp_path, never committed.

PyAV is imported inside the helpers, so that test modules import (and skip) without it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def pattern(index: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a bright square moving across a gradient, different for every index."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    img[..., 2] = (index * 37) % 256
    side = max(min(h, w) // 4, 2)
    top = (index * 3) % max(h - side, 1)
    left = (index * 5) % max(w - side, 1)
    img[top : top + side, left : left + side] = 255
    return img


def make_clip(
    path: Path,
    frames: int = 24,
    size: tuple[int, int] = (96, 128),
    fps: int | Fraction = 24,
    codec: str | None = None,
    gop: int = 12,
) -> list[np.ndarray]:
    """Write a clip of `frames` frames of `size` (H, W); return the frames as written (RGB uint8).

    .mp4 -> libx264 yuv420p with the index at the start (+faststart), so that truncating the file
    cuts frame data, not the index; .mkv -> lossless ffv1 (bgr0) unless `codec` says otherwise.
    """
    import av

    suffix = path.suffix.lower()
    codec = codec or ("ffv1" if suffix == ".mkv" else "libx264")
    if codec == "libx264" and codec not in av.codecs_available:
        codec = "mpeg4"
    options: dict[str, str] = {"movflags": "+faststart"} if suffix in (".mp4", ".mov", ".m4v") else {}
    written = [pattern(i, size) for i in range(frames)]
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.height, stream.width = size
        stream.pix_fmt = {"ffv1": "bgr0", "libx264rgb": "rgb24"}.get(codec, "yuv420p")
        stream.gop_size = gop
        if codec in ("libx264", "libx264rgb"):
            stream.options = {"crf": "10", "preset": "ultrafast", "bf": "2"}
        for img in written:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return written


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of `path`'s first video stream, decoded plainly in order, as RGB uint8."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def truncate(path: Path, fraction: float) -> int:
    """Cut `path` to `fraction` of its size; return the new size in bytes."""
    size = int(path.stat().st_size * fraction)
    with open(path, "r+b") as f:
        f.truncate(size)
    return size


def static_clip(path: Path, frames: int, size: tuple[int, int]) -> Path:
    """A static camera whose exposure jumps between 0.6 and 1.0 from frame to frame (lossless FFV1)."""
    import av

    scene = pattern(3, size).astype(np.float64)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.height, stream.width = size
        stream.pix_fmt = "bgr0"
        for k in range(frames):
            gain = 0.6 + 0.4 * ((k * 5) % 7) / 6
            image = np.clip(scene * gain, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
