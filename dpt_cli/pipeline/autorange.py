"""--range auto: one normalisation range for the whole run, so that the 16/8-bit PNGs and pictures
of a sequence compare with each other (no flicker between frames).

The model runs once. While the run goes, raw formats are written at once and each photo's raw map
is kept in a private hidden folder inside the output folder (where the outputs' disk space is),
with its own min and max. Once every photo has been through the model, the run's range is the
smallest minimum and the largest maximum, and the PNGs and pictures are written from the kept maps
over it. A photo counts as done only then; an interruption before leaves its PNGs unwritten and
its record interrupted. The private folder is removed at the end of the run, or, after a kill,
by the next --range auto run into that folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..processes import process_alive

PREFIX = ".dpt-range-"  # then the owner's pid
DEFERRED = frozenset({"png16", "png8", "color", "side-by-side"})  # the formats a range normalises


class KeptMaps:
    """The raw (H, W) float32 maps of one run, by input index, until the run's range is known."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=folder))
        self.ranges: dict[int, tuple[float, float]] = {}

    @staticmethod
    def split(outs: dict[str, Path]) -> tuple[dict[str, Path], dict[str, Path]]:
        """(written at once, written once the range is known)."""
        return {f: p for f, p in outs.items() if f not in DEFERRED}, {f: p for f, p in outs.items() if f in DEFERRED}

    def keep(self, index: int, depth: np.ndarray, photo: np.ndarray | None = None) -> None:
        """Keep input `index`'s (H, W) float32 map, and its (H, W, 3) uint8 photo for pictures that
        show it (a photo from a stream cannot be read twice)."""
        np.save(self._path(index, "depth"), np.ascontiguousarray(depth, dtype=np.float32))
        if photo is not None:
            np.save(self._path(index, "photo"), photo)
        finite = depth[np.isfinite(depth)]
        self.ranges[index] = (float(finite.min()), float(finite.max())) if finite.size else (np.inf, -np.inf)

    def has(self, index: int) -> bool:
        return index in self.ranges

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        photo = self._path(index, "photo")
        return np.load(self._path(index, "depth")), np.load(photo) if photo.exists() else None

    def _path(self, index: int, what: str) -> Path:
        return self.folder / f"{index}.{what}.npy"

    def run_range(self) -> tuple[float, float]:
        """The smallest minimum and the largest maximum of every kept map ((0, 0): none finite)."""
        lo = min(lo for lo, _ in self.ranges.values())
        hi = max(hi for _, hi in self.ranges.values())
        return (lo, hi) if lo <= hi else (0.0, 0.0)

    def discard(self, index: int) -> None:
        for what in ("depth", "photo"):
            try:
                os.unlink(self._path(index, what))
            except FileNotFoundError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove_stale(folder: Path) -> None:
    """Private folders that killed runs left behind (their pid is gone)."""
    for entry in os.scandir(folder):
        if entry.name.startswith(PREFIX) and entry.is_dir(follow_symlinks=False):
            pid = entry.name[len(PREFIX):].split("-")[0]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)

