"""Atomic file writes: a temporary file in the same directory, renamed over the target when complete.

A run killed mid-way leaves no truncated output under a final name; at worst a hidden
`.NAME.*.partial` file, which the next run's scans ignore. The temporary name is shortened as
needed so that it fits wherever the final name fits, and every error names the final path.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)
NAME_MAX = 255  # bytes in one file name (Linux, macOS)
_RANDOM, _SUFFIX = 8, ".partial"  # mkstemp adds 8 random characters
TEMP_EXTRA = 2 + _RANDOM + len(_SUFFIX)  # bytes a temporary name may add to the final one


def temporary_prefix(name: str) -> str:
    """`.NAME.` cut (at a byte boundary, kept exact as bytes) so the whole temporary name fits."""
    room = NAME_MAX - TEMP_EXTRA
    raw = os.fsencode(name)[:room]
    return "." + os.fsdecode(raw) + "."


@contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """Yield the name of a new, empty temporary file beside `path` (ordinary permissions) that
    becomes `path` once the block completes; nothing on failure. For writers that take a name.

    OSErrors carry `path` itself as their filename, not the temporary name.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=_SUFFIX, dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get ordinary permissions
        finally:
            os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from None
    except BaseException:
        _discard(tmp)
        raise


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `path` once the block completes; nothing on failure."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
