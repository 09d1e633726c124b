"""One input's outputs, from its full-size result: depth files and pictures, or label maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..config import DPTConfig
from . import colormaps, exr, ply, writers
from .manifest import FileRecord


@dataclass
class DepthMap:
    """One photo's depth at its own size, as the writers get it.

    depth: (H, W) float32, or None when only PNGs are written and `quantised` holds them all;
    lo, hi: the range that PNGs and pictures are normalised over; quantised: {bits: (H, W)
    integer map} already made on the inference device (see postprocess.quantise_on_device).
    """

    depth: np.ndarray | None
    lo: float
    hi: float
    quantised: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, depth: np.ndarray, value_range: tuple[float, float] | None) -> "DepthMap":
        lo, hi = value_range or (float(depth.min()), float(depth.max()))
        return cls(depth, lo, hi)

    def png(self, bits: int) -> np.ndarray:
        if bits in self.quantised:
            return self.quantised[bits].astype(np.uint16 if bits == 16 else np.uint8, copy=False)
        return writers.quantise(self.unit, bits)

    @cached_property
    def unit(self) -> np.ndarray:
        """(H, W) float32 in 0..1 over [lo, hi]; computed once, on first use."""
        return writers.normalise(self.depth, self.lo, self.hi)


def write_depth(
    result: DepthMap,
    photo: np.ndarray | None,
    outs: dict[str, Path],
    record: FileRecord,
    colormap: str,
    metric: bool,
    png_level: int | None = None,
    camera: dict | None = None,
) -> None:
    """Write every requested format of one depth map; record the range used. `camera`: the
    intrinsics of -f ply (see `point_cloud`)."""
    depth = result.depth
    record.min, record.max = result.lo, result.hi
    picture = None
    for fmt, path in outs.items():
        if fmt in ("png16", "png8"):
            writers.write_png(result.png(16 if fmt == "png16" else 8), path, png_level)
        elif fmt == "npy":
            writers.write_npy(depth, path)
        elif fmt == "pfm":
            writers.write_pfm(depth, path)
        elif fmt == "tiff":
            writers.write_tiff(depth, path)
        elif fmt == "exr":
            exr.write_exr(depth, path)
        elif fmt == "ply":
            point_cloud(depth, photo, path, camera or {}, metric)
        else:
            picture = coloured(result, colormap, metric) if picture is None else picture
            writers.write_picture(writers.side_by_side(photo, picture) if fmt == "side-by-side" else picture, path)


def coloured(result: DepthMap, colormap: str, metric: bool) -> np.ndarray:
    """(H, W, 3) uint8: the depth over its range through `colormap`. Pictures show nearness
    brightest: metric depth (metres, larger is farther) is reversed."""
    unit = result.unit
    return colormaps.apply(1.0 - unit if metric else unit, colormap)


def video_frame(result: DepthMap, photo: np.ndarray | None, fmt: str, colormap: str, metric: bool) -> np.ndarray:
    """One frame of an output video: (H, W) uint16 for video16, else (H, W or 2W, 3) uint8."""
    if fmt == "video16":
        return result.png(16)
    picture = coloured(result, colormap, metric)
    return writers.side_by_side(photo, picture) if fmt == "video-side-by-side" else picture


def point_cloud(depth: np.ndarray, photo: np.ndarray, path: Path, camera: dict, metric: bool) -> int:
    """A coloured point cloud: metres for metric models; for relative ones (inverse relative depth)
    z = 1/d, which is only up to an unknown scale (and the unknown shift of d), as the file says."""
    height, width = depth.shape
    if "fov" in camera:
        k = ply.Intrinsics.from_fov(camera["fov"], width, height)
    else:
        k = ply.Intrinsics(camera["fx"], camera["fy"], camera.get("cx", width / 2), camera.get("cy", height / 2))
    if metric:
        z, comments = depth, ["units: metres (camera frame: x right, y down, z forward)"]
    else:
        z = ply.depth_from_inverse(depth)
        comments = ["units: none; z = 1 / (inverse relative depth): up to an unknown scale and shift, not metres"]
    comments.append(f"intrinsics fx {k.fx:.6g} fy {k.fy:.6g} cx {k.cx:.6g} cy {k.cy:.6g} (pixels)")
    return ply.write_ply(z, photo, path, k, comments)


def write_segmentation(
    labels: np.ndarray, photo: np.ndarray | None, outs: dict[str, Path], record: FileRecord, config: DPTConfig, alpha: float
) -> None:
    """Write the label map (and overlay) of (H, W) class ids; record the classes present."""
    k = config.num_labels
    for fmt, path in outs.items():
        if fmt == "labels":
            writers.write_labels(labels, path, k)
        else:
            writers.write_picture(writers.overlay(photo, labels, k, alpha), path)
    counts = np.bincount(labels.reshape(-1), minlength=k)
    present = np.flatnonzero(counts)
    order = present[np.argsort(-counts[present], kind="stable")]
    record.classes = [
        {"id": int(c), "name": config.id2label.get(int(c), str(c)), "fraction": round(float(counts[c]) / labels.size, 6)}
        for c in order
    ]
