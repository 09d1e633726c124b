"""Coloured point clouds from depth maps: binary little-endian PLY, one vertex per valid pixel.

Camera frame (OpenCV convention): x right, y down, z forward along the optical axis, in the
units of the depth map. Pixel (u, v) (column, row) covers [u, u+1) x [v, v+1) in image
coordinates, so its centre is (u + 0.5, v + 0.5), and its ray meets depth z at
    x = (u + 0.5 - cx) * z / fx,    y = (v + 0.5 - cy) * z / fy.
In this convention the image centre is (width / 2, height / 2) and the edges are 0 and width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open

VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_PLY_TYPES = {"<f4": "float", "|u1": "uchar"}


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels: focal lengths fx, fy and principal point cx, cy.

    The principal point is in the pixel-centre convention of this module (centres at +0.5).
    """

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, fov_degrees: float, width: int, height: int) -> Intrinsics:
        """Square pixels, principal point at the image centre, `fov_degrees` edge to edge horizontally."""
        if not 0 < fov_degrees < 180:
            raise ValueError(f"horizontal field of view must be between 0 and 180 degrees, got {fov_degrees}")
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        f = (width / 2) / math.tan(math.radians(fov_degrees) / 2)
        return cls(fx=f, fy=f, cx=width / 2, cy=height / 2)


def points(z: np.ndarray, k: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a (H, W) depth map (distance along the optical axis, any unit).

    Returns the (N, 3) float32 camera-frame points of the kept pixels in row-major order, and the
    (H, W) bool mask of those pixels: finite and > 0 (everything else has no place in the cloud).
    """
    if z.ndim != 2:
        raise ValueError(f"expected a (H, W) depth map, got shape {z.shape}")
    z = np.asarray(z, dtype=np.float32)
    mask = np.isfinite(z) & (z > 0)
    h, w = z.shape
    # Per-column and per-row ray slopes, computed once in float64, then broadcast and masked.
    sx = ((np.arange(w) + 0.5 - k.cx) / k.fx).astype(np.float32)
    sy = ((np.arange(h) + 0.5 - k.cy) / k.fy).astype(np.float32)
    zs = z[mask]
    xyz = np.empty((zs.size, 3), np.float32)
    np.multiply(np.broadcast_to(sx, (h, w))[mask], zs, out=xyz[:, 0])
    np.multiply(np.broadcast_to(sy[:, None], (h, w))[mask], zs, out=xyz[:, 1])
    xyz[:, 2] = zs
    return xyz, mask


def depth_from_inverse(inverse: np.ndarray) -> np.ndarray:
    """Depth z = 1 / d from a relative model's inverse depth d (larger is nearer), as float32.

    Relative models predict d only up to an unknown scale s and shift t (d = s / z_true + t), so
    the result is depth up to scale only where t is 0; otherwise the cloud is a distorted (though
    order-preserving) version of the scene. Pixels with d <= 0 or NaN become NaN, which `points`
    drops; a d so small that 1 / d overflows becomes inf, also dropped.
    """
    d = np.asarray(inverse, dtype=np.float32)
    z = np.full(d.shape, np.nan, dtype=np.float32)
    with np.errstate(over="ignore"):
        np.divide(np.float32(1), d, out=z, where=d > 0)
    return z


def write_ply(z: np.ndarray, rgb: np.ndarray, path: Path, k: Intrinsics, comments: Sequence[str] = ()) -> int:
    """Write the coloured cloud of a (H, W) depth map to `path` (atomically); returns the vertex count.

    `rgb` is the (H, W, 3) photo: uint8, or float in 0..1 (rounded to 8 bits). Each comment becomes
    one `comment` header line, e.g. the units or "relative depth: up to an unknown scale and shift".
    """
    if rgb.shape != (*z.shape, 3):
        raise ValueError(f"colours {rgb.shape} do not match the depth map {z.shape} (expected (H, W, 3))")
    xyz, mask = points(z, k)
    vertices = np.empty(len(xyz), VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[:, axis]
    colours = _bytes(rgb[mask])
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colours[:, channel]
    with atomic_open(path) as f:
        f.write(_header(len(vertices), comments))
        f.write(vertices.view(np.uint8))  # packed 15-byte records: the PLY body as it stands
    return len(vertices)


def _bytes(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) colours as uint8: as they are when uint8, else 0..1 floats scaled and rounded."""
    if rgb.dtype == np.uint8:
        return rgb
    return (np.clip(np.nan_to_num(rgb.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)


def _header(count: int, comments: Sequence[str]) -> bytes:
    """The ASCII header; a comment is kept on its one line (line breaks become spaces)."""
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += ["comment " + " ".join(c.splitlines()) for c in comments]
    lines.append(f"element vertex {count}")
    lines += [f"property {_PLY_TYPES[VERTEX[n].str]} {n}" for n in VERTEX.names]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii", "backslashreplace")
