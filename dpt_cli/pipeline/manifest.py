"""dpt-run.json: what a run did, per file, so results can be interpreted and resumed later.

Always strict JSON in UTF-8: non-finite numbers are written as null, and paths are written
readable (`text.shown`), with their exact bytes in base64 beside them (`input_b64`,
`outputs_b64`) whenever the readable form cannot give them back (names that are not UTF-8, or
hold control characters).
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..text import raw_b64, shown
from .atomic import atomic_open

OK, SKIPPED, FAILED, INTERRUPTED, PENDING = "ok", "skipped", "failed", "interrupted", "pending"


@dataclass
class FileRecord:
    input: str
    outputs: list[str] = field(default_factory=list)
    status: str = PENDING
    error: str | None = None
    input_size: list[int] | None = None  # [height, width] after EXIF orientation
    network_size: list[int] | None = None  # [height, width] fed to the model
    min: float | None = None  # normalisation range of the pictures and PNGs
    max: float | None = None
    classes: list[dict] | None = None  # segmentation: [{"id", "name", "fraction"}], largest first
    frames: int | None = None  # animated or multi-page input: how many frames (the first was used)
    note: str | None = None  # why a file was skipped (not a regular file, a link not followed, ...)


@dataclass
class RunInfo:
    task: str
    model: str
    device: str
    dtype: str
    units: str
    settings: dict
    started: float = field(default_factory=time.time)


def write_manifest(path: Path, info: RunInfo, records: list[FileRecord], interrupted: bool, profile: dict | None = None) -> None:
    counts = {s: sum(r.status == s for r in records) for s in (OK, SKIPPED, FAILED, INTERRUPTED)}
    doc = {
        "dpt_version": __version__,
        **{k: v for k, v in asdict(info).items() if k != "started"},
        "started": _iso(info.started),
        "finished": _iso(time.time()),
        "interrupted": interrupted,
        "counts": counts,
        **({"profile": profile} if profile else {}),
        "files": [_record(r) for r in records],
    }
    doc["model"] = shown(doc["model"])
    text = json.dumps(_finite(doc), indent=2, ensure_ascii=False, allow_nan=False)
    with atomic_open(path) as f:
        f.write((text + "\n").encode("utf-8"))


def _record(r: FileRecord) -> dict:
    doc = {k: v for k, v in asdict(r).items() if v is not None}
    doc["input"] = shown(r.input)
    doc["outputs"] = [shown(o) for o in r.outputs]
    for key in ("error", "note"):
        if doc.get(key) is not None:
            doc[key] = shown(doc[key])
    for c in doc.get("classes") or ():
        c["name"] = shown(c["name"])  # names come from the model's config: any text at all
    if raw := raw_b64(r.input):
        doc["input_b64"] = raw
    raws = [raw_b64(o) for o in r.outputs]
    if any(raws):
        doc["outputs_b64"] = raws
    return doc


def _finite(value):
    """`value` with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def recorded_outputs(path: Path, limit: int = 256 << 20) -> set[Path]:
    """The outputs an earlier run recorded in the manifest at `path` (empty if none or unreadable),
    so that a run whose -o is its input folder never takes its own outputs for photos."""
    try:
        if path.stat().st_size > limit:
            return set()
        doc = json.loads(path.read_bytes())
        found = set()
        for record in doc.get("files", []):
            raws = record.get("outputs_b64") or [None] * len(record.get("outputs", []))
            for name, raw in zip(record.get("outputs", []), raws):
                found.add(Path(os.fsdecode(base64.b64decode(raw)) if raw else name))
        return found
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return set()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))
