"""What `-o` names: one file, a folder, or standard output.

`-o out.png` (a name with an extension dpt writes) is one file whose format the extension sets;
`-o out/`, `-o out` (no extension) or an existing directory is a folder that mirrors the inputs;
`-o -` streams the one output to standard output; no `-o` at all means the folder `dpt-out`.
An extension dpt cannot write (`-o d.exr` without EXR support, `-o d.bmp`) is a usage error,
never silently a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import SEGMENTATION
from ..errors import UsageError
from ..text import shown

FILE, FOLDER, STDOUT = "file", "folder", "stdout"
DEFAULT_FOLDER = "dpt-out"
# extension -> the format it writes (png: 16- or 8-bit per --bits; pictures: coloured depth)
DEPTH_EXTENSIONS = {
    ".png": "png", ".npy": "npy", ".pfm": "pfm", ".tif": "tiff", ".tiff": "tiff", ".exr": "exr", ".ply": "ply",
    ".jpg": "color", ".jpeg": "color", ".webp": "color",
    # one video clip in: its coloured depth as H.264 (lossy), or 16-bit depth as FFV1 (lossless)
    ".mp4": "video", ".m4v": "video", ".mov": "video", ".mkv": "video16",
}
SEGMENT_EXTENSIONS = {".png": "labels"}


@dataclass(frozen=True)
class Destination:
    kind: str  # FILE, FOLDER or STDOUT
    path: Path  # the file or folder; for STDOUT, set by the run to a private temporary file
    default: bool = False  # no -o was given

    @property
    def folder(self) -> Path:
        """Where the manifest and the lock go."""
        return self.path if self.kind == FOLDER else self.path.parent


def extensions(task: str) -> dict[str, str]:
    return SEGMENT_EXTENSIONS if task == SEGMENTATION else DEPTH_EXTENSIONS


def parse(text: str | None, task: str) -> Destination:
    """The destination `-o TEXT` names (see the module docstring); UsageError when it cannot be."""
    if text is None:
        return Destination(FOLDER, Path(DEFAULT_FOLDER), default=True)
    if not text:
        raise UsageError("-o: an empty path names no file or folder (for the current folder, say -o .)")
    if text == "-":
        return Destination(STDOUT, Path("-"))
    path = Path(text)
    if text.endswith(("/", os.sep)) or os.path.isdir(path):
        return Destination(FOLDER, path)
    suffix = path.suffix.lower()
    if not suffix:
        return Destination(FOLDER, path)
    if suffix not in extensions(task):
        if task == SEGMENTATION and suffix in DEPTH_EXTENSIONS:
            raise UsageError(f"-o {shown(text)}: segment writes label maps as .png (a palette PNG of class ids)")
        supported = ", ".join(extensions(task))
        raise UsageError(
            f"-o {shown(text)}: dpt does not write {shown(path.suffix)} files (it writes {supported}); "
            f"for a folder, end the name with a slash: -o {shown(text)}/"
        )
    return Destination(FILE, path)
