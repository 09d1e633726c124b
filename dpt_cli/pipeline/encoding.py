"""One input's outputs, from its full-size result: depth files and pictures, or label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import DPTConfig
from . import colormaps, writers
from .manifest import FileRecord


def write_depth(
    depth: np.ndarray,
    photo: np.ndarray | None,
    outs: dict[str, Path],
    record: FileRecord,
    value_range: tuple[float, float] | None,
    colormap: str,
    metric: bool,
) -> None:
    """Write every requested format of a (H, W) float32 depth map; record the range used."""
    lo, hi = value_range or (float(depth.min()), float(depth.max()))
    unit = writers.normalise(depth, lo, hi)
    record.min, record.max = lo, hi
    # pictures show nearness brightest: metric depth (metres, larger is farther) is reversed
    picture = None
    for fmt, path in outs.items():
        if fmt in ("png16", "png8"):
            writers.write_png(unit, path, 16 if fmt == "png16" else 8)
        elif fmt == "npy":
            writers.write_npy(depth, path)
        elif fmt == "pfm":
            writers.write_pfm(depth, path)
        elif fmt == "tiff":
            writers.write_tiff(depth, path)
        else:
            if picture is None:
                picture = colormaps.apply(1.0 - unit if metric else unit, colormap)
            writers.write_picture(writers.side_by_side(photo, picture) if fmt == "side-by-side" else picture, path)


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
