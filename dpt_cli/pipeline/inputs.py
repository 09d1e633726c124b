"""Command-line inputs -> the image files to process, each with the relative path its outputs mirror.

Inputs are any mix of files, directories (top level, or the whole tree with `recursive`), glob
patterns and "-" (one path per line on stdin). Inside directories, files are taken by content,
not extension: a photo named `scan` is found, a `notes.txt` is ignored, and a text file named
`x.jpg` is kept so that it can be reported as bad.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .images import is_image

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".j2k", ".tga", ".ico", ".dib",
}


@dataclass(frozen=True)
class InputItem:
    path: Path  # as found (absolute)
    rel: Path  # mirrored under the output directory


@dataclass(frozen=True)
class InputProblem:
    path: str
    error: str


def _looks_like_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _scan(root: Path, recursive: bool, exclude: set[Path], found: list[Path], problems: list[InputProblem]) -> None:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        problems.append(InputProblem(str(root), f"cannot list directory ({exc.strerror})"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files, and our own temporary files
        path = Path(entry.path).absolute()
        if path in exclude:
            continue
        if entry.is_dir():
            if recursive:
                _scan(path, recursive, exclude, found, problems)
            elif _looks_like_image_name(path):
                problems.append(InputProblem(str(path), "is a directory, not an image"))
        elif _looks_like_image_name(path) or is_image(path):
            found.append(path)


def _expand_one(spec: str, recursive: bool, exclude: set[Path]) -> tuple[list[tuple[Path, Path]], list[InputProblem]]:
    """-> ([(file, anchor)], problems). The anchor is the folder that relative names start from."""
    problems: list[InputProblem] = []
    path = Path(spec).expanduser()
    if path.exists() or path.is_symlink():
        matches = [path]
    elif glob.has_magic(spec):
        matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(spec), recursive=recursive))]
        if not matches:
            return [], [InputProblem(spec, "no file matches this pattern")]
    else:
        return [], [InputProblem(spec, "no such file or directory")]
    out: list[tuple[Path, Path]] = []
    for match in matches:
        match = match.absolute()
        if match.is_dir():
            files: list[Path] = []
            _scan(match, recursive, exclude, files, problems)
            out += [(f, match) for f in files]
        else:
            out.append((match, match.parent))
    return out, problems


def expand(specs: list[str], recursive: bool = False, stdin: TextIO | None = None, exclude: tuple[Path, ...] = ()) -> tuple[list[InputItem], list[InputProblem]]:
    """Expand command-line inputs; duplicates are dropped, order is that of the command line."""
    wanted: list[str] = []
    for spec in specs:
        if spec == "-":
            wanted += [line.rstrip("\r\n") for line in (stdin or sys.stdin) if line.strip()]
        else:
            wanted.append(spec)
    excluded = {p.absolute() for p in exclude}
    pairs: list[tuple[Path, Path]] = []
    problems: list[InputProblem] = []
    for spec in wanted:
        found, bad = _expand_one(spec, recursive, excluded)
        pairs += found
        problems += bad
    if not pairs:
        return [], problems
    common = Path(os.path.commonpath([str(anchor) for _, anchor in pairs]))
    seen: set[Path] = set()
    items = []
    for path, _ in pairs:
        if path not in seen:
            seen.add(path)
            items.append(InputItem(path, path.relative_to(common)))
    return items, problems
