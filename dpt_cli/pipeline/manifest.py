"""dpt-run.json: what a run did, per file, so results can be interpreted and resumed later."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
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


@dataclass
class RunInfo:
    task: str
    model: str
    device: str
    dtype: str
    units: str
    settings: dict
    started: float = field(default_factory=time.time)


def write_manifest(path: Path, info: RunInfo, records: list[FileRecord], interrupted: bool) -> None:
    counts = {s: sum(r.status == s for r in records) for s in (OK, SKIPPED, FAILED, INTERRUPTED)}
    doc = {
        "dpt_version": __version__,
        **{k: v for k, v in asdict(info).items() if k != "started"},
        "started": _iso(info.started),
        "finished": _iso(time.time()),
        "interrupted": interrupted,
        "counts": counts,
        "files": [{k: v for k, v in asdict(r).items() if v is not None} for r in records],
    }
    with atomic_open(path) as f:
        f.write((json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))
