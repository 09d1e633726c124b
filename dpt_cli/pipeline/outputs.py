"""Where each input's outputs go.

`-o FILE` (a name with a known extension, one input; see `destination`) writes exactly that file,
its format taken from the extension, and the siblings --side-by-side and --overlay ask for. `-o DIR` mirrors the input tree under DIR: `photos/a/b.jpg` with
`--format png16 --format color` becomes `DIR/a/b.png` and `DIR/a/b.color.png`. Relative names
start at the deepest folder common to all inputs. When two inputs would share an output name
(`a.jpg` and `a.png` in one folder), each of them keeps its extension in the name instead
(`a.jpg.png`, `a.png.png`); the choice depends only on the names, never on processing order.

Every planned output is checked, not assumed, to lie inside `-o` both as written and after
resolving symbolic links in its folders, and never to be one of the inputs.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..config import SEGMENTATION
from ..errors import UsageError
from ..text import shown
from .atomic import NAME_MAX, TEMP_EXTRA
from .clips import VIDEO_FORMATS, frame_name
from .destination import FOLDER, STDOUT, Destination, extensions
from .inputs import InputItem

DEPTH_SUFFIXES = {
    "png16": ".png",
    "png8": ".8bit.png",
    "npy": ".npy",
    "pfm": ".pfm",
    "tiff": ".tiff",
    "exr": ".exr",
    "ply": ".ply",
    "color": ".color.png",
    "side-by-side": ".side-by-side.png",
    "video": ".mp4",
    "video-side-by-side": ".mp4",
    "video16": ".mkv",
}
VIDEO_MESSAGE = "give a directory (one file per frame), or -o NAME.mp4 (a video) or NAME.mkv (16-bit, lossless)"
SEGMENT_SUFFIXES = {"labels": ".png", "overlay": ".overlay.png"}
PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
MANIFEST = "dpt-run.json"
PATH_MAX = 4096  # bytes in a whole path (Linux)


@dataclass(frozen=True)
class Plan:
    outputs: list[dict[str, Path]]  # per input item: format -> path
    manifest: Path
    single: bool


def single_formats(task: str, path: Path, bits: int, side_by_side: bool, overlay: bool) -> dict[str, Path]:
    """The outputs of `-o FILE`: the format its extension names, and the siblings that
    --side-by-side and --overlay add (`d.png` -> `d.side-by-side.png`)."""
    fmt = extensions(task)[path.suffix.lower()]
    if fmt == "video16" and side_by_side:
        raise UsageError(f"-o {shown(path)} holds 16-bit depth values (FFV1 gray16); side-by-side frames go to -o NAME.mp4")
    if fmt in ("video", "video16"):
        return {"video-side-by-side" if side_by_side else fmt: path}
    if fmt == "png":
        fmt = "png16" if bits == 16 else "png8"
    outputs = {fmt: path}
    picture = path.suffix if path.suffix.lower() in PICTURE_SUFFIXES else ".png"
    if side_by_side:
        outputs["side-by-side"] = path.with_name(path.stem + ".side-by-side" + picture)
    if overlay:
        outputs["overlay"] = path.with_name(path.stem + SEGMENT_SUFFIXES["overlay"])
    return outputs


def folder_formats(task: str, formats: list[str], bits: int, side_by_side: bool, overlay: bool) -> list[str]:
    """The formats each input gets under `-o DIR` (or `-o -`, which allows one)."""
    if task == SEGMENTATION:
        return ["labels"] + (["overlay"] if overlay else [])
    chosen = list(dict.fromkeys(formats)) or ["png16" if bits == 16 else "png8"]
    if side_by_side and "side-by-side" not in chosen:
        chosen.append("side-by-side")
    return chosen


def plan(task: str, items: list[InputItem], dest: Destination, formats: list[str], bits: int = 16, side_by_side: bool = False, overlay: bool = False) -> Plan:
    real_dir = lru_cache(maxsize=None)(os.path.realpath)  # the folders many outputs share, resolved once
    output = dest.path
    if any(len(os.fsencode(part)) > NAME_MAX for part in output.parts):
        raise UsageError(f"-o {shown(output)}: a name in it is longer than {NAME_MAX} bytes")
    if dest.kind != FOLDER:
        if dest.kind == STDOUT:
            outputs = {folder_formats(task, formats, bits, False, False)[0]: output}
        else:
            outputs = single_formats(task, output, bits, side_by_side, overlay)
        _check_single(items, dest, outputs)
        planned = [outputs] * len(items)  # a video: every frame has it; no input left: only problems
        manifest = output.parent / MANIFEST
    else:
        if os.path.lexists(output) and not os.path.isdir(output):
            raise UsageError(f"-o {shown(output)}: exists and is not a directory (for one output file, use an extension such as .png)")
        planned = _mirror(items, output, folder_formats(task, formats, bits, side_by_side, overlay), task)
        manifest = output / MANIFEST
        _check_inside(planned, output, real_dir)
    _refuse_input_overwrite(items, planned, manifest, real_dir)
    return Plan(planned, manifest, dest.kind != FOLDER)


def _check_single(items: list[InputItem], dest: Destination, outputs: dict[str, Path]) -> None:
    """One file (or stdout) for one photo; one video for the frames of one clip."""
    if not items:
        return  # no input left: the run only reports the problems
    named = "-" if dest.kind == STDOUT else shown(dest.path)
    clips = {id(item.clip): item.clip for item in items if item.clip is not None}
    if set(outputs) & set(VIDEO_FORMATS):
        if len(clips) != 1 or len(clips) < len({id(item.clip) for item in items}):
            raise UsageError(f"-o {named} writes the depth of one video clip: give one video file as the input")
    elif clips:
        clip = next(iter(clips.values()))
        raise UsageError(f"-o {named} names one file but {shown(clip.path)} has {clip.info.frames} frames: {VIDEO_MESSAGE}")
    elif len(items) > 1:
        raise UsageError(f"-o {named} names one file but there are {len(items)} inputs; give a directory")


def _mirror(items: list[InputItem], root: Path, formats: list[str], task: str) -> list[dict[str, Path]]:
    suffixes = SEGMENT_SUFFIXES if task == SEGMENTATION else DEPTH_SUFFIXES
    full_name = [False] * len(items)

    def name(item: InputItem, full: bool) -> Path:
        if item.clip is not None:
            return frame_name(item, full)
        return item.rel.parent / (item.rel.name if full else item.rel.stem)

    def assign() -> list[dict[str, Path]]:
        return [{f: root / (str(name(item, full)) + suffixes[f]) for f in formats} for item, full in zip(items, full_name)]

    for _ in range(3):
        planned = assign()
        users: dict[Path, list[int]] = defaultdict(list)
        for i, outs in enumerate(planned):
            for p in outs.values():
                users[p].append(i)
        clashes = {i for who in users.values() if len(who) > 1 for i in who}
        if not clashes:
            return planned
        clashing_clips = {id(items[i].clip) for i in clashes if items[i].clip is not None}
        for i, item in enumerate(items):  # a clip's frames share one folder: all of them, or none
            if i in clashes or (item.clip is not None and id(item.clip) in clashing_clips):
                full_name[i] = True
    raise UsageError("cannot give every input a distinct output name; rename the inputs")


def name_problem(path: Path) -> str | None:
    """Why `path` cannot be created whatever the disk says (a name too long), or None."""
    name, whole = len(os.fsencode(path.name)), len(os.fsencode(os.fspath(path)))
    if name > NAME_MAX:
        return f"output name too long ({name} bytes; a file name holds at most {NAME_MAX})"
    if whole + TEMP_EXTRA >= PATH_MAX:  # its temporary sibling must fit too
        return f"output path too long ({whole} bytes; dpt writes paths of at most {PATH_MAX - 1 - TEMP_EXTRA})"
    return None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_inside(planned: list[dict[str, Path]], root: Path, real_dir: Callable[[str], str]) -> None:
    """Every output lies under `root`, lexically and once symbolic links in its folders are
    resolved (a link inside -o to elsewhere must not carry writes out of it)."""
    lexical_root = os.path.normpath(os.path.abspath(root))
    real_root = os.path.realpath(root)
    for outs in planned:
        for p in outs.values():
            lexical = os.path.normpath(os.path.abspath(p))
            if not (_under(lexical, lexical_root) and _under(real_dir(os.path.dirname(lexical)), real_root)):
                raise UsageError(f"{shown(p)}: would be written outside -o {shown(root)} (through '..' or a symbolic link); refusing")


def _real(path: Path, real_dir: Callable[[str], str]) -> set[str]:
    """What a write to `path` would replace (its folder resolved, its own name kept), and what it
    names when it is itself a symbolic link: one lstat a path, folders resolved once."""
    lexical = os.path.normpath(os.path.abspath(path))
    names = {os.path.join(real_dir(os.path.dirname(lexical)), os.path.basename(lexical))}
    if os.path.islink(lexical):
        names.add(os.path.realpath(lexical))
    return names


def _refuse_input_overwrite(items: list[InputItem], planned: list[dict[str, Path]], manifest: Path, real_dir: Callable[[str], str]) -> None:
    inputs = set().union(*(_real(item.path, real_dir) for item in items))
    for outs in planned:
        for p in list(outs.values()) + [manifest]:
            if _real(p, real_dir) & inputs:
                raise UsageError(f"output {shown(p)} is one of the inputs: refusing to overwrite it")
