"""Where `dpt convert` may write, and how it puts the folder there without losing anything else.

`--force` replaces only a folder that an earlier `dpt convert` wrote: one with its conversion.json
and nothing but the files convert writes. Whatever the flags, the destination is never a plain file,
a symbolic link, `/`, the current folder or one of its ancestors, the source or a folder holding it.
Every check runs before the (slow) source is read, and again just before an existing folder is
replaced. The new folder is built in a hidden sibling `.NAME.partial-PID`; the one it replaces is
moved aside to `.NAME.old-PID` for the instant of the swap. A run killed outright leaves those
behind, so the next run into the same place removes the ones whose process is gone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Callable

from ..errors import DPTError, UsageError
from ..processes import process_alive
from ..interrupts import deferred
from ..text import shown

# Every file `dpt convert` writes into its folder; conversion.json is its signature.
CONVERTED_FILES = frozenset({"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "conversion.json"})
SIGNATURE = "conversion.json"
_SIGNATURE_KEYS = ("source_sha256", "dpt_version")
_ADVICE = "choose a new folder"


def check_destination(src: Path, dst: Path, force: bool) -> Path:
    """The resolved folder to write for `dpt convert src -o dst`, or a UsageError saying why not.

    Reads nothing but directory entries and conversion.json, and changes nothing on disk.
    """
    try:
        return _check(src, dst, force)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop, from Path.resolve
        raise UsageError(f"{shown(dst)}: cannot use as the output folder: {_reason(exc)}; {_ADVICE}") from None


def _check(src: Path, dst: Path, force: bool) -> Path:
    if dst.is_symlink():  # replacing through a link would rename or empty its target, not the link
        raise UsageError(f"{shown(dst)}: is a symbolic link; give the folder it points to, or {_ADVICE}")
    target, source, cwd = dst.resolve(), src.resolve(), Path.cwd().resolve()
    if target == target.parent:
        raise UsageError(f"{shown(dst)}: is the root folder; {_ADVICE}")
    if _contains(target, cwd):
        what = "the current folder" if target == cwd else "a folder that holds the current folder"
        raise UsageError(f"{shown(dst)}: is {what}; {_ADVICE}")
    if target == source:
        raise UsageError(f"{shown(dst)}: is the source file itself; {_ADVICE}")
    if _contains(target, source):
        raise UsageError(f"{shown(dst)}: holds the source file {shown(src)}; {_ADVICE}")
    if not os.path.lexists(target):
        _check_creatable(dst, target)
        return target
    if not target.is_dir():
        raise UsageError(f"{shown(dst)}: exists and is not a folder; {_ADVICE}")
    _check_creatable(dst, target.parent)  # the swap renames inside the parent
    entries = list(target.iterdir())
    if not entries:
        return target
    if not force:
        raise UsageError(
            f"{shown(dst)}: exists and is not empty; {_ADVICE} "
            "(--force replaces only a folder written by dpt convert)"
        )
    problem = _not_converted(target, entries)
    if problem:
        raise UsageError(f"{shown(dst)}: {problem}; --force replaces only a folder written by dpt convert: {_ADVICE}")
    return target


def _contains(folder: Path, path: Path) -> bool:
    """Whether resolved `path` is resolved `folder` or lies inside it. Besides the names, the
    inodes are compared, so that a bind mount or other alias of the same folder counts too."""
    if path == folder or folder in path.parents:
        return True
    try:
        wanted = _identity(folder)
    except OSError:
        return False  # a folder that does not exist holds nothing
    for p in (path, *path.parents):
        try:
            if _identity(p) == wanted:
                return True
        except OSError:
            continue
    return False


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _check_creatable(dst: Path, folder: Path) -> None:
    """Refuse now, not after the slow conversion, when the output cannot be created under `folder`."""
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{shown(dst)}: {shown(existing)} is not a folder; {_ADVICE}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{shown(dst)}: cannot write in {shown(existing)} (permission denied); {_ADVICE}")


def _not_converted(folder: Path, entries: list[Path]) -> str | None:
    """Why `folder` is not a folder written by dpt convert, or None when it is one."""
    names = {e.name for e in entries}
    if SIGNATURE not in names:
        return f"was not written by dpt convert (it has no {SIGNATURE})"
    others = sorted(names - CONVERTED_FILES)
    if others:
        listed = ", ".join(shown(n) for n in others[:3]) + (", ..." if len(others) > 3 else "")
        return f"holds files dpt convert does not write ({listed})"
    for entry in entries:
        if not stat.S_ISREG(entry.lstat().st_mode):
            return f"holds {shown(entry.name)}, which is not a plain file"
    if not _is_signature(folder / SIGNATURE):
        return f"its {SIGNATURE} was not written by dpt convert"
    return None


def _is_signature(path: Path) -> bool:
    """Whether `path` is a conversion.json as dpt convert writes it (a small JSON object with its keys)."""
    if path.stat().st_size > 64 << 10:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and all(k in data for k in _SIGNATURE_KEYS)


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


# --- hidden siblings: the folder being built, the folder being replaced --------------------------

def _sibling(target: Path, kind: str, pid: int | None = None) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid() if pid is None else pid}"


def remove_stale(target: Path) -> list[Path]:
    """Remove the `.NAME.partial-PID` / `.NAME.old-PID` siblings of `target` left by runs that were
    killed outright; those of a process still running are left alone. Returns what was removed."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(partial|old)-([1-9][0-9]*)")
    removed = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed  # no parent yet: nothing stale
    for path in siblings:
        match = pattern.fullmatch(path.name)
        if not match or path.is_symlink() or not path.is_dir():
            continue
        pid = int(match.group(2))
        # Our own PID cannot be ours yet (this runs before our folder is made): a previous run's,
        # reused, as happens to every run in a fresh container.
        if pid != os.getpid() and process_alive(pid):
            continue
        # only the files convert writes, never rmtree: such a folder may hold anything since
        # (even the very checkpoint being converted now)
        _remove_converted(path)
        if not os.path.lexists(path):
            removed.append(path)
    return removed


def _remove_converted(folder: Path) -> None:
    """Delete a folder that held a dpt conversion: only the files convert writes, then the folder
    if that emptied it, so that anything else (put there by someone meanwhile) survives."""
    for name in CONVERTED_FILES:
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


# --- writing -------------------------------------------------------------------------------------

def write_atomically(src: Path, dst: Path, force: bool, write: Callable[[Path], None]) -> None:
    """Build the folder `dst` with `write(tmp)` in a hidden sibling, then put it in place in one step.

    `dst` appears complete or not at all; on any failure or interruption the sibling is removed.
    """
    target = check_destination(src, dst, force)
    tmp, old = _sibling(target, "partial"), _sibling(target, "old")
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            write(tmp)
        except OSError as exc:
            raise DPTError(f"{shown(exc.filename or dst)}: cannot write: {_reason(exc)}") from None
        with deferred():
            target = check_destination(src, dst, force)  # it may have changed during the conversion
            _swap(tmp, target, old, dst)
    finally:
        with deferred():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap(tmp: Path, target: Path, old: Path, dst: Path) -> None:
    """Put the finished folder `tmp` at `target`, replacing the folder there (checked before)."""
    try:
        if not os.path.lexists(target) or not any(target.iterdir()):
            tmp.rename(target)  # rename(2) replaces an empty folder in one step
            return
        target.rename(old)
        try:
            tmp.rename(target)
        except OSError:
            old.rename(target)  # put the previous folder back
            raise
    except OSError as exc:
        raise DPTError(f"{shown(dst)}: cannot put the converted folder in place: {_reason(exc)}") from None
    _remove_converted(old)
