"""Where each input's outputs go.

`-o FILE` (a name with a known extension, one input) writes exactly that file, its format taken
from the extension. `-o DIR` mirrors the input tree under DIR: `photos/a/b.jpg` with
`--format png16 --format color` becomes `DIR/a/b.png` and `DIR/a/b.color.png`. Relative names
start at the deepest folder common to all inputs. When two inputs would share an output name
(`a.jpg` and `a.png` in one folder), each of them keeps its extension in the name instead
(`a.jpg.png`, `a.png.png`); the choice depends only on the names, never on processing order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..config import SEGMENTATION
from ..errors import UsageError
from .inputs import InputItem

DEPTH_SUFFIXES = {
    "png16": ".png",
    "png8": ".8bit.png",
    "npy": ".npy",
    "pfm": ".pfm",
    "tiff": ".tiff",
    "color": ".color.png",
    "side-by-side": ".side-by-side.png",
}
SEGMENT_SUFFIXES = {"labels": ".png", "overlay": ".overlay.png"}
SINGLE_FILE_SUFFIXES = {".png", ".npy", ".pfm", ".tif", ".tiff", ".jpg", ".jpeg", ".webp"}
MANIFEST = "dpt-run.json"


@dataclass(frozen=True)
class Plan:
    outputs: list[dict[str, Path]]  # per input item: format -> path
    manifest: Path
    single: bool


def is_single_file(output: Path) -> bool:
    return output.suffix.lower() in SINGLE_FILE_SUFFIXES and not output.is_dir()


def _single_format(task: str, output: Path, bits: int, side_by_side: bool) -> str:
    ext = output.suffix.lower()
    if task == SEGMENTATION:
        if ext != ".png":
            raise UsageError(f"{output}: segment writes label maps as .png (a palette PNG of class ids)")
        return "labels"
    if side_by_side and ext in (".png", ".jpg", ".jpeg", ".webp"):
        return "side-by-side"
    if ext == ".png":
        return "png16" if bits == 16 else "png8"
    return {".npy": "npy", ".pfm": "pfm", ".tif": "tiff", ".tiff": "tiff"}.get(ext, "color")


def plan(task: str, items: list[InputItem], output: Path, formats: list[str], bits: int = 16, side_by_side: bool = False, overlay: bool = False) -> Plan:
    if is_single_file(output):
        if len(items) != 1:
            raise UsageError(f"-o {output} names one file but there are {len(items)} inputs; give a directory")
        outputs = {_single_format(task, output, bits, side_by_side): output}
        if overlay:
            outputs["overlay"] = output.with_name(output.stem + SEGMENT_SUFFIXES["overlay"])
        planned = [outputs]
        manifest = output.parent / MANIFEST
    else:
        if output.exists() and not output.is_dir():
            raise UsageError(f"-o {output}: exists and is not a directory (for one output file, use an extension such as .png)")
        planned = _mirror(items, output, _dir_formats(task, formats, bits, side_by_side, overlay), task)
        manifest = output / MANIFEST
    _refuse_input_overwrite(items, planned, manifest)
    return Plan(planned, manifest, is_single_file(output))


def _dir_formats(task: str, formats: list[str], bits: int, side_by_side: bool, overlay: bool) -> list[str]:
    if task == SEGMENTATION:
        return ["labels"] + (["overlay"] if overlay else [])
    chosen = list(dict.fromkeys(formats)) or ["png16" if bits == 16 else "png8"]
    if side_by_side and "side-by-side" not in chosen:
        chosen.append("side-by-side")
    return chosen


def _mirror(items: list[InputItem], root: Path, formats: list[str], task: str) -> list[dict[str, Path]]:
    suffixes = SEGMENT_SUFFIXES if task == SEGMENTATION else DEPTH_SUFFIXES
    full_name = [False] * len(items)

    def assign() -> list[dict[str, Path]]:
        return [
            {f: root / item.rel.parent / ((item.rel.name if full else item.rel.stem) + suffixes[f]) for f in formats}
            for item, full in zip(items, full_name)
        ]

    for _ in range(3):
        planned = assign()
        users: dict[Path, list[int]] = defaultdict(list)
        for i, outs in enumerate(planned):
            for p in outs.values():
                users[p].append(i)
        clashes = {i for who in users.values() if len(who) > 1 for i in who}
        if not clashes:
            return planned
        for i in clashes:
            full_name[i] = True
    raise UsageError("cannot give every input a distinct output name; rename the inputs")


def _refuse_input_overwrite(items: list[InputItem], planned: list[dict[str, Path]], manifest: Path) -> None:
    inputs = {item.path.resolve() for item in items}
    for outs in planned:
        for p in list(outs.values()) + [manifest]:
            if p.resolve() in inputs:
                raise UsageError(f"output {p} is one of the inputs: refusing to overwrite it")
