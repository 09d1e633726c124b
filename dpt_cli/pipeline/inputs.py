"""Command-line inputs -> the image files to process, each with the relative path its outputs mirror.

Inputs are any mix of files, directories (top level, or the whole tree with `recursive`), glob
patterns and "-": a path list on stdin (one per line, or NUL-separated), or one image's bytes. Inside directories, files are taken by content,
not extension: a photo named `scan` is found, and so is a video clip (see `clips`), a `notes.txt`
is ignored, and a text file named `x.jpg` is kept so that it can be reported as bad.

Hostile trees are safe: every path is normalised (its folder resolved, `..` and symbolic links
included) before output names are derived from it, so names never climb out of the output folder;
a file reached under two names is processed once; symbolic links to directories are not followed
by `-r` unless `follow_symlinks` (and then a loop is detected and skipped); FIFOs, sockets and
devices in a tree are skipped with their reason, never opened; names are bytes, kept exactly.
"""

from __future__ import annotations

import glob
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import UsageError
from ..text import os_reason, shown
from .globbing import expand_pattern
from .images import is_image
from .reading import is_stream_name, kind_of
from .stdin import check, read_head, read_image_bytes
from .video import is_video

if TYPE_CHECKING:
    from .clips import Clip

PATH_LIST_LIMIT = 256 << 20  # bytes of paths read from stdin (a million long paths)
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".j2k", ".tga", ".ico", ".dib",
}


@dataclass(frozen=True)
class InputItem:
    path: Path  # normalised absolute path: resolved folder + the name as given
    rel: Path  # mirrored under the output directory; never absolute, never holds ".."
    stream: bool = False  # /dev/stdin or /dev/fd/N named on purpose: read whole, interruptibly
    data: bytes | None = None  # an image's bytes already read (from stdin through -)
    frame: int | None = None  # a frame of a video clip (see clips): its index in display order
    clip: "Clip | None" = None  # that clip


@dataclass(frozen=True)
class InputProblem:
    path: str  # as the file system names it (undecodable bytes as surrogates); see text.shown
    error: str
    skipped: bool = False  # True: not for us (a FIFO in a tree, ...); False: asked for and failed
    missing: bool = False  # named on the command line and not there: a usage error before any work


@dataclass
class _Found:
    pairs: list[tuple[InputItem, Path]]  # (item without rel, anchor folder)
    problems: list[InputProblem]


def normalise(path: Path) -> Path:
    """An absolute path whose folder is resolved (symbolic links and `..`) but whose last
    component is kept as named, so a symbolic link to a file keeps its own name."""
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if path.name in ("", ".", ".."):
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def looks_like_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _stat_problem(path: Path, exc: OSError) -> InputProblem:
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        return InputProblem(os.fspath(path), "broken symbolic link (its target does not exist)")
    return InputProblem(os.fspath(path), os_reason(exc))


class _Scanner:
    """Walks directories iteratively (no recursion limit) in sorted, depth-first order."""

    def __init__(self, recursive: bool, follow_symlinks: bool, exclude: set[str], found: _Found) -> None:
        """`exclude`: real paths (os.path.realpath) of files and folders that are never inputs."""
        self.recursive, self.follow = recursive, follow_symlinks
        self.exclude, self.found = exclude, found
        self.seen_dirs: dict[tuple[int, int], Path] = {}

    def scan(self, root: Path, anchor: Path, root_stat: os.stat_result) -> None:
        self.seen_dirs.setdefault((root_stat.st_dev, root_stat.st_ino), root)
        stack = [root]
        while stack:
            folder = stack.pop()
            subfolders = self._list(folder, anchor)
            stack.extend(reversed(subfolders))

    def _list(self, folder: Path, anchor: Path) -> list[Path]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            self.found.problems.append(InputProblem(os.fspath(folder), f"cannot list directory ({exc.strerror})"))
            return []
        # real folders before links: a tree reached both ways keeps its own name
        entries.sort(key=lambda e: e.is_symlink())
        real_folder = os.path.realpath(folder)
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files, and our own temporary files
            path = folder / entry.name
            # compared by real path: the folder may have been named through a symbolic link
            real = os.path.realpath(path) if entry.is_symlink() else os.path.join(real_folder, entry.name)
            if real not in self.exclude:
                sub = self._entry(entry, path, anchor)
                if sub is not None:
                    subfolders.append(sub)
        return subfolders

    def _entry(self, entry: os.DirEntry, path: Path, anchor: Path) -> Path | None:
        """Record one directory entry; return it when it is a folder to descend into."""
        problems = self.found.problems
        link = entry.is_symlink()
        try:
            st = os.stat(path)  # follows links: what a link points to decides what it is
        except OSError as exc:
            if looks_like_image_name(entry.name) or not isinstance(exc, FileNotFoundError):
                problems.append(_stat_problem(path, exc))
            return None
        if stat.S_ISDIR(st.st_mode):
            return self._folder(path, st, link)
        if stat.S_ISREG(st.st_mode):
            if looks_like_image_name(entry.name) or is_image(path) or is_video(path):
                self.found.pairs.append((InputItem(path, Path()), anchor))
        else:
            problems.append(InputProblem(os.fspath(path), f"{kind_of(st.st_mode)}, not a regular file: skipped", skipped=True))
        return None

    def _folder(self, path: Path, st: os.stat_result, link: bool) -> Path | None:
        problems = self.found.problems
        if not self.recursive:
            if looks_like_image_name(path.name):
                problems.append(InputProblem(os.fspath(path), "is a directory, not an image"))
            return None
        if link and not self.follow:
            problems.append(InputProblem(os.fspath(path), "symbolic link to a directory: not followed (--follow-symlinks to descend)", skipped=True))
            return None
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs:
            first = self.seen_dirs[key]
            loop = first == path or first in path.parents
            why = f"symbolic link loop (back to {shown(first)})" if loop else f"already scanned as {shown(first)}"
            problems.append(InputProblem(os.fspath(path), f"{why}: skipped", skipped=True))
            return None
        self.seen_dirs[key] = path
        return path


def _expand_one(spec: str, scanner: _Scanner, named: bool = True) -> None:
    """Expand one input; `named`: it was typed on the command line, so its absence is a usage error."""
    found = scanner.found
    if "\0" in spec:
        found.problems.append(InputProblem(spec.replace("\0", "\\0"), "a file name cannot hold a NUL byte"))
        return
    if not spec:
        found.problems.append(InputProblem("''", "an empty path names no file (for the current folder, say .)"))
        return
    path = Path(os.path.expanduser(spec))
    try:
        st = os.stat(path)
    except OSError as exc:
        if glob.has_magic(spec) and isinstance(exc, FileNotFoundError):
            matches = expand_pattern(spec, scanner.recursive, scanner.follow)
            if not matches:
                found.problems.append(InputProblem(os.fspath(spec), "no file matches this pattern", missing=named))
            for match in matches:
                _expand_one(match, scanner)  # each match is a real path: no magic left to expand
            return
        if isinstance(exc, FileNotFoundError) and not os.path.islink(path):
            found.problems.append(InputProblem(os.fspath(spec), "no such file or directory", missing=named))
        else:
            found.problems.append(_stat_problem(path, exc))
        return
    stream = is_stream_name(spec) and not stat.S_ISREG(st.st_mode)
    path = Path(spec) if stream else normalise(path)
    if stat.S_ISDIR(st.st_mode):
        scanner.scan(path, path, st)
    elif stat.S_ISREG(st.st_mode) or stream:
        found.pairs.append((InputItem(path, Path(), stream), path.parent))
    else:
        found.problems.append(InputProblem(os.fspath(spec), f"{kind_of(st.st_mode)}, not a regular file: only regular files are read"))


def read_path_list(stdin: IO | None, limit: int = PATH_LIST_LIMIT, null: bool = False, head: bytes = b"") -> list[str]:
    """Paths from stdin (after the `head` already read from it), one per line, or NUL-separated
    with `null`. Bytes are read, so non-UTF-8 names survive exactly."""
    stream = stdin or sys.stdin
    raw = getattr(stream, "buffer", None)
    data = (raw or stream).read(limit + 1 - len(head))
    if raw is None:  # a text stream without bytes underneath (embedding callers)
        data = os.fsencode(data)
    data = head + data
    if len(data) > limit:
        raise UsageError(f"-: the path list on stdin is over {limit >> 20} MiB; give folders or patterns instead")
    if null:
        lines = [os.fsdecode(name) for name in data.split(b"\0")]
    else:
        lines = [os.fsdecode(line.rstrip(b"\r\n")) for line in data.split(b"\n")]
    return [line for line in lines if line.strip()]


def _stdin_inputs(stdin: IO | None, null: bool) -> tuple[list[str], InputItem | None]:
    """What `-` stands for: the paths of a path list, or one image whose bytes are on stdin."""
    stream = stdin or sys.stdin
    head = read_head(stream)
    if check(head, null):
        return [], InputItem(Path("-"), Path("stdin"), data=read_image_bytes(stream, head))
    return read_path_list(stream, null=null, head=head), None


def expand(
    specs: list[str],
    recursive: bool = False,
    stdin: IO | None = None,
    exclude: tuple[Path, ...] = (),
    follow_symlinks: bool = False,
    null: bool = False,
) -> tuple[list[InputItem], list[InputProblem]]:
    """Expand command-line inputs; a file met twice (under any name) is kept once, order is that
    of the command line; `exclude` paths (the output folder, earlier outputs) are never inputs."""
    found = _Found([], [])
    scanner = _Scanner(recursive, follow_symlinks, {os.path.realpath(p) for p in exclude}, found)
    for spec in specs:
        if spec != "-":
            _expand_one(spec, scanner)
            continue
        listed, image = _stdin_inputs(stdin, null)
        if image is not None:
            found.pairs.append((image, Path(".")))
        for path in listed:  # a listed file that is gone fails alone: lists are often made earlier
            _expand_one(path, scanner, named=False)
    # one identity a file, whatever name it was reached by: kept once, and never an excluded path
    identities = [os.fspath(item.path) if item.stream or item.data is not None else os.path.realpath(item.path) for item, _ in found.pairs]
    pairs = [(pair, real) for pair, real in zip(found.pairs, identities) if real not in scanner.exclude]
    if not pairs:
        return [], found.problems
    anchors = [os.fspath(anchor) for (item, anchor), _ in pairs if item.data is None]
    common = Path(os.path.commonpath(anchors)) if anchors else Path("/")
    seen: set[str] = set()
    items = []
    for (item, _), real in pairs:
        if real not in seen:
            seen.add(real)
            rel = item.rel if item.data is not None else item.path.relative_to(common)
            items.append(InputItem(item.path, rel, item.stream, item.data))
    return items, found.problems
