"""Glob patterns (`photos/*.jpg`, `photos/**/*.png` with -r), expanded by dpt's own walk.

Python's glob follows every symbolic link to a directory under `**`, whatever --follow-symlinks
says, and two links to `.` make it walk 2^40 paths. Here a pattern obeys the same rules as a
folder walk: links to folders are followed only when asked, each folder is entered once (so
loops end), and the walk goes only as deep as the pattern can match. As in the shell, `*` and `?`
stay within one name and do not match names starting with "."; `**` spans any number of folders
with -r and is a plain `*` without it.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat


def split_pattern(pattern: str) -> tuple[str, list[str]]:
    """('photos/2024', ['**', '*.jpg']) for 'photos/2024/**/*.jpg': the folder the walk starts
    from (no wildcard in it) and the pattern's remaining names."""
    parts = pattern.split(os.sep)
    first = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    base = os.sep.join(parts[:first]) or (os.sep if pattern.startswith(os.sep) else ".")
    return base, [p for p in parts[first:] if p]


def matches(parts: list[str], names: list[str]) -> bool:
    """Whether the names of a path below the base match the pattern's names ('**': any number)."""
    if not parts:
        return not names
    head = parts[0]
    if head == "**":
        return any(matches(parts[1:], names[i:]) for i in range(len(names) + 1))
    if not names or (names[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], head) and matches(parts[1:], names[1:])


def expand_pattern(pattern: str, recursive: bool, follow_symlinks: bool) -> list[str]:
    """The paths matching `pattern`, sorted; folders included. Iterative: any depth."""
    base, parts = split_pattern(os.path.expanduser(pattern))
    if not recursive:
        parts = ["*" if p == "**" else p for p in parts]
    deep = "**" in parts
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[str, list[str]]] = [(base, [])]
    while stack:
        folder, names = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue  # a loop, or a folder already walked under another name
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            below = names + [entry.name]
            path = os.path.join(folder, entry.name) if folder != "." else entry.name
            folder_link = entry.is_symlink() and _is_dir(entry)
            if matches(parts, below) and (follow_symlinks or not folder_link):
                found.append(path)  # a link to a folder matches only where links are followed
            if (deep or len(below) < len(parts)) and _is_dir(entry) and (follow_symlinks or not folder_link):
                stack.append((path, below))
    return sorted(found, key=os.fsencode)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return stat.S_ISDIR(entry.stat().st_mode)  # follows links
    except OSError:
        return False
