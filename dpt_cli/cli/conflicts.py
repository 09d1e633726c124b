"""Options that contradict each other or would be silently ignored: usage errors, found before
anything is loaded. Each message says which option does what, and what to write instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import UsageError
from ..pipeline.destination import FILE, STDOUT, Destination

PNG_FORMATS = ("png16", "png8")
PICTURE_FORMATS = ("color", "side-by-side", "video", "video-side-by-side")
VIDEO16 = "video16"  # -o NAME.mkv: 16-bit depth, normalised like the 16-bit PNGs
RAW_FORMATS = "npy, pfm, tiff, exr and ply"


@dataclass(frozen=True)
class Asked:
    """What the command line said, None meaning 'not given' (so a default is never a conflict)."""

    task: str
    destination: Destination
    formats: list[str]
    bits: Optional[int] = None
    colormap: Optional[str] = None
    side_by_side: bool = False
    overlay: bool = False
    alpha: Optional[float] = None
    value_range: Optional[str] = None
    png_level: Optional[int] = None
    skip_existing: bool = False
    overwrite: bool = False
    recursive: bool = False
    follow_symlinks: bool = False
    null: bool = False
    reads_stdin: bool = False
    camera: bool = False  # --fov or --fx/--fy/--cx/--cy given
    smooth: Optional[int] = None
    align: bool = False


def effective_formats(a: Asked) -> list[str]:
    """The formats this run writes for each input."""
    from ..pipeline.outputs import folder_formats, single_formats  # numpy: not for --help

    bits = a.bits or 16
    if a.destination.kind == FILE:
        return list(single_formats(a.task, a.destination.path, bits, a.side_by_side, a.overlay))
    return folder_formats(a.task, a.formats, bits, a.side_by_side, a.overlay)


def check(a: Asked) -> list[str]:
    """The formats to write, or UsageError for the first contradiction found."""
    _check_general(a)
    formats = effective_formats(a)
    _check_destination(a, formats)
    _check_depth_options(a, formats)
    return formats


def _check_general(a: Asked) -> None:
    if a.skip_existing and a.overwrite:
        _fail("--skip-existing keeps existing outputs and --overwrite replaces them: give one of the two")
    if a.follow_symlinks and not a.recursive:
        _fail("--follow-symlinks only matters when descending into folders: add -r")
    if a.null and not a.reads_stdin:
        _fail("--null reads a NUL-separated path list from stdin: give - as an input (find . -print0 | dpt ... -0 -)")
    if a.smooth is not None and a.value_range not in (None, "auto"):
        _fail(f"--smooth sets a running range; --range {a.value_range} sets another: give one of the two")
    if a.alpha is not None and not a.overlay:
        _fail("--alpha sets the overlay's opacity: add --overlay")


def _check_destination(a: Asked, formats: list[str]) -> None:
    dest = a.destination
    if dest.kind == FILE:
        extra = [f for f in a.formats if f not in formats]
        if extra:
            _fail(
                f"-o {dest.path} writes {formats[0]} (its extension says so), not {', '.join(extra)}: "
                "-f goes with -o DIR or -o -, or change the file's extension"
            )
    elif dest.kind == STDOUT and len(formats) > 1:
        extra = " ".join(flag for flag, fmt in (("--side-by-side", "side-by-side"), ("--overlay", "overlay")) if fmt in formats)
        how = f"drop {extra}" if extra and len(a.formats) <= 1 else "keep one -f"
        _fail(f"-o - writes one output to stdout, but this run asks for {', '.join(formats)}: {how}, or give -o DIR")


def _check_depth_options(a: Asked, formats: list[str]) -> None:
    pngs = [f for f in formats if f in PNG_FORMATS]
    pictures = [f for f in formats if f in PICTURE_FORMATS]
    written = ", ".join(formats)
    if a.bits is not None:
        wanted = "png16" if a.bits == 16 else "png8"
        if not pngs:
            _fail(f"--bits sets the depth PNG's bit depth, but this run writes {written}")
        if pngs != [wanted]:
            other = next(f for f in pngs if f != wanted)
            _fail(f"--bits {a.bits} contradicts -f {other}: use -f {wanted} alone (or drop --bits)")
    if a.png_level is not None and not pngs:
        _fail(f"--png-level sets the compression of 16/8-bit depth PNGs, but this run writes {written}")
    if a.colormap is not None and not pictures:
        _fail(
            f"--colormap colours depth pictures, but this run writes {written}: "
            "add -f color or --side-by-side, or write -o NAME.jpg"
        )
    if (a.value_range is not None or a.smooth is not None) and not (pngs or pictures or VIDEO16 in formats):
        option = "--range" if a.value_range is not None else "--smooth"
        _fail(f"{option} normalises depth PNGs, pictures and videos; {RAW_FORMATS} keep the model's own values")
    if "ply" in formats and not a.camera:
        _fail("-f ply needs the camera: --fov DEGREES (horizontal), or --fx and --fy in pixels (--cx, --cy default to the centre)")
    if a.camera and "ply" not in formats:
        _fail("--fov, --fx, --fy, --cx and --cy describe the camera of -f ply point clouds: add -f ply (or -o NAME.ply)")


def _fail(message: str) -> None:
    raise UsageError(message)
