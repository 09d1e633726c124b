"""One normalisation range for many depth maps (--range auto, and the frames of a video clip), so
that the 16/8-bit PNGs, pictures and videos of a sequence compare with each other (no flicker).

The model runs once. While the run goes, raw formats are written at once and each input's raw map
is kept in a private hidden folder inside the output folder (where the outputs' disk space is);
its min and max go into a log there once the map is safely on disk. Once every input of a group
has been through the model, the group's range is known (see `sequences`) and the PNGs, pictures
and videos are written from the kept maps over it. An input counts as done only then.

A run that is killed or interrupted, or in which an input of a group failed, keeps its folder: the
next run with the same model, weights and settings into the same place reuses every map in it
(those inputs skip the model; a map is keyed by its output and by its input's size, time and
frame, so a replaced input is run again) and every range in its log (inputs already written with
--skip-existing still count towards the range), so resuming finishes exactly what is missing, over
the same range. --overwrite reuses nothing. The folder is removed when a run ends complete; a
folder that a dead run writing the same outputs with other settings left is removed by the next
depth run there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from ..processes import process_alive

PREFIX = ".dpt-range-"  # then the outputs' fingerprint, "-", the settings' fingerprint
DEFERRED = frozenset({"png16", "png8", "color", "side-by-side", "video", "video-side-by-side", "video16"})  # what a range normalises
LOG, OWNER = "ranges.log", "owner"


def fingerprint(*parts: object) -> str:
    """A short name for `parts`: what decides the kept maps' values (model, weights, dtype, sizes,
    batch), or where they go (the manifest, or the one output file)."""
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def key_of(output: Path, source: str) -> str:
    """The name an input's kept map goes by: its first output's absolute path and what it is made
    from (`source`: the input's identity and frame), hashed."""
    return hashlib.sha256(os.fsencode(os.path.abspath(output)) + b"\0" + os.fsencode(source)).hexdigest()[:24]


class KeptMaps:
    """The raw (H, W) float32 maps of one run (and of an interrupted run it resumes), by key."""

    def __init__(self, folder: Path, where: str, settings: str, fresh: bool = False) -> None:
        """`where`, `settings`: fingerprints (see module docstring); `fresh`: reuse nothing (--overwrite)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder / f"{PREFIX}{where}-{settings}"
        remove_stale(folder, where, self.folder.name)
        if fresh:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(exist_ok=True)
        (self.folder / OWNER).write_text(str(os.getpid()))
        self._lock = threading.Lock()
        self.ranges: dict[str, tuple[float, float]] = _read_log(self.folder / LOG)
        self.resumed = sum(self._path(k, "depth").exists() for k in self.ranges)  # maps an earlier run kept

    @staticmethod
    def split(outs: dict[str, Path], everything: bool = False) -> tuple[dict[str, Path], dict[str, Path]]:
        """(written at once, written once the range is known); `everything`: all of them later
        (--align changes the raw values too)."""
        if everything:
            return {}, dict(outs)
        return {f: p for f, p in outs.items() if f not in DEFERRED}, {f: p for f, p in outs.items() if f in DEFERRED}

    def keep(self, key: str, depth: np.ndarray, photo: np.ndarray | None = None) -> None:
        """Keep an (H, W) float32 map, and its (H, W, 3) uint8 photo for pictures that show it (a
        photo from a stream cannot be read twice). Its range is logged once both are on disk."""
        if photo is not None:
            _save(self._path(key, "photo"), photo)
        _save(self._path(key, "depth"), np.ascontiguousarray(depth, dtype=np.float32))
        finite = depth[np.isfinite(depth)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (np.inf, -np.inf)
        with self._lock:
            with open(self.folder / LOG, "a", encoding="ascii") as log:
                log.write(f"{key} {lo!r} {hi!r}\n")
            self.ranges[key] = (lo, hi)

    def has(self, key: str, photo: bool = False) -> bool:
        """Whether `key`'s map (and photo, if asked) is kept."""
        return key in self.ranges and self._path(key, "depth").exists() and (not photo or self._path(key, "photo").exists())

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray | None]:
        photo = self._path(key, "photo")
        return np.load(self._path(key, "depth")), np.load(photo) if photo.exists() else None

    def _path(self, key: str, what: str) -> Path:
        return self.folder / f"{key}.{what}.npy"

    def close(self, complete: bool) -> None:
        """Remove the folder when the run is complete; else keep it for the run that resumes."""
        if complete:
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            try:
                os.unlink(self.folder / OWNER)
            except OSError:
                pass


def _save(path: Path, array: np.ndarray) -> None:
    """np.save, atomically: a killed run never leaves a truncated map under its name."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _read_log(path: Path) -> dict[str, tuple[float, float]]:
    """The ranges a log holds; a line cut short by a kill (no newline yet) is ignored."""
    ranges = {}
    try:
        lines = path.read_text(encoding="ascii", errors="replace").split("\n")[:-1]
    except OSError:
        return ranges
    for line in lines:
        parts = line.split()
        try:
            ranges[parts[0]] = (float(parts[1]), float(parts[2]))
        except (IndexError, ValueError):
            continue
    return ranges


def remove_stale(folder: Path, where: str, mine: str = "") -> None:
    """Folders that dead runs writing the same outputs (`where`) with other settings left behind:
    their maps can never be used. A live run's folder, and other outputs' (runs of -o FILE in
    parallel), are kept."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = entry.name[len(PREFIX):]
        legacy = name.split("-")[0].isdigit()  # an older dpt's PREFIX + pid + "-..."
        if entry.name == mine or not entry.name.startswith(PREFIX) or not (legacy or name.startswith(f"{where}-")):
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            owner = (Path(entry.path) / OWNER).read_text().strip()
        except OSError:  # no owner: the run ended, or was killed before it wrote one
            owner = name.split("-")[0] if legacy else ""
        if not (owner.isdigit() and process_alive(int(owner))):
            shutil.rmtree(entry.path, ignore_errors=True)
