"""dpt-run.json: what the runs into an output folder did, per file, so results can be interpreted
and resumed later. Each run merges its records into the file (see `manifest_merge`):

    {"dpt_version": "...", "format": 2,
     "conventions": {"paths": ..., "sizes": ...},
     "runs": [{"run": 1, "dpt_version", "started", "finished", "command": [argv...], "task", "model",
               "device", "dtype", "units", "settings", "interrupted", "counts", "profile"?,
               "videos"?: [{"input", "frames", "done", "size", "fps", "time_base", "stopped"?,
                            "frame_min", "frame_max"}]}, ...],
     "files": [{"input", "outputs", "status", "error"?, "input_size"?, "network_size"?, "min"?,
                "max"?, "classes"?, "frames"?, "frame"?, "note"?, "run", "last_attempt"?}, ...]}

Paths are relative to the manifest's folder (`-` and stream names like /dev/stdin stay); sizes
are [height, width]. Always strict JSON in UTF-8: non-finite numbers are written as null, and
paths readable (`text.shown`), with their exact bytes in base64 beside them (`input_b64`,
`outputs_b64`) whenever the readable form cannot give them back. A manifest that cannot be read
is never overwritten: it is renamed aside (`dpt-run.json.corrupt`) and the run starts a new one.
The format-1 layout of earlier versions (one run, top-level settings) is read and converted.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from .. import __version__
from ..text import raw_b64, shown
from .atomic import atomic_open
from .manifest_merge import Entry, merge
from .reading import is_stream_name

OK, SKIPPED, FAILED, INTERRUPTED, PENDING = "ok", "skipped", "failed", "interrupted", "pending"
FORMAT = 2
CONVENTIONS = {"paths": "relative to the folder of this file", "sizes": "[height, width] in pixels"}
SIZE_LIMIT = 256 << 20  # bytes: a larger manifest is not read (set aside when writing)
LOCK_FILE = ".dpt-run.json.lock"  # only where a folder cannot be flocked (NFS)
MAX_RUNS = 100  # runs kept in the history (the latest); file records name the run that wrote them
_RUN_KEYS = ("task", "model", "device", "dtype", "units", "settings", "interrupted", "counts", "profile")


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
    frames: int | None = None  # animated or multi-page input: how many frames (the first was used); a clip: its frames
    frame: int | None = None  # a frame of a video clip: its index in display order
    note: str | None = None  # why a file was skipped (not a regular file, a link not followed, ...)
    rank: int | None = None  # under torchrun: the rank that did this file


@dataclass
class RunInfo:
    task: str
    model: str
    device: str
    dtype: str
    units: str
    settings: dict
    started: float = field(default_factory=time.time)
    command: list[str] = field(default_factory=list)  # the command line (sys.argv)
    videos: list[dict] = field(default_factory=list)  # per video clip: see clips.manifest_entries


class Unreadable(ValueError):
    """The file at a manifest's path is not a manifest this version can read."""


def write_manifest(path: Path, info: RunInfo, records: list[FileRecord], interrupted: bool, profile: dict | None = None) -> None:
    """Merge this run's `records` into the manifest at `path` (atomically, one writer at a time)."""
    folder = os.path.abspath(path.parent)
    with _exclusive(path.parent):
        runs, old, note = [], [], None
        if os.path.lexists(path):
            try:
                runs, old = read_manifest(path)
            except (OSError, Unreadable) as exc:
                note = _set_aside(path, exc)
        number = max([r["run"] for r in runs if isinstance(r.get("run"), int)] + [len(runs)]) + 1
        files = merge(old, [_entry(r, number) for r in records], number)
        run = _run(number, info, records, interrupted, profile, note)
        if info.videos:
            run["videos"] = [{**v, "input": shown(_relative(v["input"], folder))} for v in info.videos]
        # the history is bounded: many single-file runs (xargs -P) must not grow the file per run
        doc = {"dpt_version": __version__, "format": FORMAT, "conventions": CONVENTIONS,
               "runs": [*runs, run][-MAX_RUNS:], "files": [_stored(e, folder) for e in files]}
        text = json.dumps(_finite(doc), indent=2, ensure_ascii=False, allow_nan=False)
        with atomic_open(path) as f:
            f.write((text + "\n").encode("utf-8"))


def recorded_outputs(path: Path, limit: int = SIZE_LIMIT) -> set[Path]:
    """The outputs earlier runs recorded in the manifest at `path` (absolute; empty if none or
    unreadable), so that a run whose -o is its input folder never takes its own outputs for photos."""
    try:
        _, entries = read_manifest(path, limit)
    except (OSError, Unreadable):
        return set()
    # outputs on disk: a failed or interrupted record's planned outputs were never written, and
    # a photo put there later under that name is an input like any other
    return {Path(o) for e in entries if e.status in (OK, SKIPPED) for o in e.outputs}


def read_manifest(path: Path, limit: int = SIZE_LIMIT) -> tuple[list[dict], list[Entry]]:
    """The runs and file records (with absolute paths) of the manifest at `path`, either format.

    Raises OSError when it cannot be read, Unreadable when it is not a manifest."""
    if path.stat().st_size > limit:
        raise Unreadable(f"larger than {limit >> 20} MiB")
    try:
        doc = json.loads(path.read_bytes())
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
            raise Unreadable("not a dpt manifest")
        if doc.get("format") == FORMAT and isinstance(doc.get("runs"), list):
            runs, base, run = doc["runs"], os.path.abspath(path.parent), None
            if not all(isinstance(r, dict) for r in runs):
                raise Unreadable("not a dpt manifest")
        elif "format" not in doc and "dpt_version" in doc:  # format 1: paths absolute or cwd-relative
            runs = [{"run": 1, "dpt_version": doc["dpt_version"], "started": doc.get("started"),
                     "finished": doc.get("finished"), "command": [], **{k: doc[k] for k in _RUN_KEYS if k in doc}}]
            base, run = os.path.abspath(os.curdir), 1  # the best guess: they were relative to the cwd
        else:
            raise Unreadable("not a dpt manifest (or one of a newer dpt version)")
        return runs, [_loaded(r, base, run) for r in doc["files"]]
    except Unreadable:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise Unreadable(f"invalid: {type(exc).__name__}") from None


def _loaded(record: dict, base: str, run: int | None) -> Entry:
    fields = dict(record)
    name, raw = fields.pop("input"), fields.pop("input_b64", None)
    names, raws = fields.pop("outputs", []), fields.pop("outputs_b64", None)
    if not isinstance(name, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise Unreadable("a file record without its paths")
    if raws is not None and len(raws) != len(names):
        raise Unreadable("a file record whose outputs_b64 does not match its outputs")
    if not isinstance(fields.get("status"), str):
        raise Unreadable("a file record without a status")
    if run is not None:
        fields["run"] = run
    outputs = [_absolute(n, r, base) for n, r in zip(names, raws or [None] * len(names))]
    return Entry(_absolute(name, raw, base), outputs, fields)


def _absolute(name: str, raw: str | None, base: str) -> str:
    exact = os.fsdecode(base64.b64decode(raw, validate=True)) if raw else name
    return os.path.abspath(os.path.join(base, exact)) if _is_file_name(exact) else exact


def _entry(r: FileRecord, run: int) -> Entry:
    fields = {k: v for k, v in asdict(r).items() if v is not None and k not in ("input", "outputs")}
    for key in ("error", "note"):
        if key in fields:
            fields[key] = shown(fields[key])
    for c in fields.get("classes") or ():
        c["name"] = shown(c["name"])  # names come from the model's config: any text at all
    fields["run"] = run
    name = os.path.abspath(r.input) if _is_file_name(r.input) else r.input
    return Entry(name, [os.path.abspath(o) for o in r.outputs], fields)


def _stored(e: Entry, folder: str) -> dict:
    name, names = _relative(e.input, folder), [_relative(o, folder) for o in e.outputs]
    doc = {"input": shown(name), "outputs": [shown(n) for n in names], **e.fields}
    if raw := raw_b64(name):
        doc["input_b64"] = raw
    raws = [raw_b64(n) for n in names]
    if any(raws):
        doc["outputs_b64"] = raws
    return doc


def _relative(path: str, folder: str) -> str:
    return os.path.relpath(path, folder) if _is_file_name(path) else path


def _is_file_name(name: str) -> bool:
    """False for `-` (stdin's image) and stream names (/dev/stdin): they stay as given."""
    return name != "-" and not is_stream_name(name)


def _run(number: int, info: RunInfo, records: list[FileRecord], interrupted: bool, profile: dict | None, note: str | None) -> dict:
    counts = {s: sum(r.status == s for r in records) for s in (OK, SKIPPED, FAILED, INTERRUPTED)}
    return {
        "run": number,
        "dpt_version": __version__,
        "started": _iso(info.started),
        "finished": _iso(time.time()),
        "command": [shown(a) for a in info.command],
        "task": info.task,
        "model": shown(info.model),
        "device": info.device,
        "dtype": info.dtype,
        "units": info.units,
        "settings": info.settings,
        "interrupted": interrupted,
        "counts": counts,
        **({"profile": profile} if profile else {}),
        **({"note": note} if note else {}),
    }


def _set_aside(path: Path, why: Exception) -> str:
    """Rename an unreadable manifest out of the way (never over another file); say so."""
    n, aside = 0, path.with_name(path.name + ".corrupt")
    while os.path.lexists(aside):
        n += 1
        aside = path.with_name(f"{path.name}.corrupt.{n}")
    os.rename(path, aside)
    reason = why.strerror if isinstance(why, OSError) and why.strerror else str(why)
    return f"the earlier {path.name} could not be read ({shown(reason)}); it was kept as {shown(aside.name)}"


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One manifest writer at a time: a flock on the folder itself (parallel `-o FILE` runs and the
    ranks of a torchrun job share the folder's run lock, so it cannot serve). NFS emulates flock
    with POSIX locks, which need a file open for writing: there a hidden lock file is used. Where
    no lock can be had at all, writes are still atomic."""
    fds = []
    try:
        for path, flags in ((folder, os.O_RDONLY | os.O_DIRECTORY), (folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)):
            try:
                fds.append(os.open(path, flags | os.O_CLOEXEC, 0o666))
                fcntl.flock(fds[-1], fcntl.LOCK_EX)
                break
            except OSError:
                continue
        yield
    finally:
        for fd in fds:
            os.close(fd)


def _finite(value):
    """`value` with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))
