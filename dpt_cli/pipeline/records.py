"""Each input's record through a run: what to write for it, and how a failure is told in it."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import DPTError
from ..text import shown
from .inputs import InputProblem
from .manifest import FAILED, OK, SKIPPED, FileRecord
from .outputs import name_problem


@dataclass
class Summary:
    records: list[FileRecord] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    profile: dict | None = None  # with --profile: see pipeline.profile

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def images_per_second(self) -> float:
        return self.count(OK) / self.seconds if self.seconds > 0 else 0.0


def problem_record(p: InputProblem) -> FileRecord:
    """The record of an input that failed (or was skipped) before it could be read."""
    message = f"{shown(p.path)}: {p.error}"
    if p.skipped:
        return FileRecord(input=p.path, status=SKIPPED, note=message)
    return FileRecord(input=p.path, status=FAILED, error=message)


def targets(outs: dict[str, Path], record: FileRecord, overwrite: bool, skip_existing: bool) -> dict[str, Path]:
    """The outputs to write for one input; none, with the record's status set, when it is skipped
    or refused (a name too long, an output that exists)."""
    refused = next(((p, why) for p in outs.values() if (why := name_problem(p))), None)
    if refused:
        record.status, record.error = FAILED, f"{shown(refused[0])}: {refused[1]}"
        return {}
    missing = {f: p for f, p in outs.items() if not os.path.exists(p)}
    if len(missing) == len(outs) or overwrite:
        return dict(outs)
    if skip_existing:
        if missing:  # a run interrupted between two outputs of this input: finish it
            return missing
        record.status = SKIPPED
    else:
        existing = next(p for p in outs.values() if p not in missing.values())
        record.status = FAILED
        record.error = f"{shown(existing)}: output exists (use --overwrite to replace it, or --skip-existing)"
    return {}


@contextmanager
def outcome(record: FileRecord, source: object) -> Iterator[None]:
    """Any failure while writing the outputs of `source` (an input path) fails that input alone,
    in one line."""
    try:
        yield
    except DPTError as exc:
        record.status, record.error = FAILED, shown(exc)
    except OSError as exc:
        record.status, record.error = FAILED, f"{shown(exc.filename or source)}: cannot write ({exc.strerror or exc})"
    except Exception as exc:  # an encoder's surprise fails this file, not the run
        record.status, record.error = FAILED, f"{shown(source)}: cannot write outputs ({type(exc).__name__}: {shown(exc)})"
