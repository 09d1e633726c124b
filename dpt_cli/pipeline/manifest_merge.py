"""Merging one run's file records into those already in an output folder's manifest.

Each output file belongs to one record, keyed by its absolute path: the latest record that wrote
it (status ok), or, while no run has written it, the latest attempt. A record that wrote nothing
(skipped, failed, interrupted) leaves an earlier ok record of its outputs as it is (its min/max
still describe the files on disk) and is noted on it as `last_attempt`. A record without outputs
(an input that could not be expanded) is keyed by its input, and is replaced by any later record
of that input. Order is first-seen: a record takes the place of the first one it replaces, new
ones are appended, the rest keep theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"


@dataclass
class Entry:
    """One file record: its paths (absolute) apart from everything else it stores."""

    input: str
    outputs: list[str]
    fields: dict  # status, error, min, max, ..., run, last_attempt: as written in the manifest

    @property
    def status(self) -> str | None:
        return self.fields.get("status")

    def keys(self) -> list[tuple[str, str]]:
        return [("output", o) for o in self.outputs] or [("input", self.input)]


def merge(old: list[Entry], new: list[Entry], run: int) -> list[Entry]:
    """The records after run `run` (whose own records are `new`, in order) updated `old`."""
    slots: list[Entry | None] = list(old)
    where = {key: i for i, entry in enumerate(old) for key in entry.keys()}
    for entry in new:
        if entry.status != OK and entry.outputs:
            kept = [i for i in _hits(entry, where, len(old)) if slots[i].status == OK]
            for i in kept:
                slots[i].fields["last_attempt"] = _attempt(entry, run)
            owned = {o for i in kept for o in slots[i].outputs}
            entry.outputs = [o for o in entry.outputs if o not in owned]
            if not entry.outputs:
                continue
        place = None
        for i in _hits(entry, where, len(old)):
            if _take(slots[i], entry, where):
                slots[i] = None
                place = i if place is None else place
        if place is None:
            place = len(slots)
            slots.append(entry)
        else:
            slots[place] = entry
        for key in entry.keys():
            where[key] = place
    return [entry for entry in slots if entry is not None]


def _hits(entry: Entry, where: dict, old: int) -> list[int]:
    """Where the earlier records sharing an output with `entry`, or of its input without outputs, are.
    By input only records of earlier runs (the first `old` slots): one run's records never replace
    each other so (a clip's frames, and the record of where the clip stopped)."""
    hits = {where[k] for k in (("output", o) for o in entry.outputs) if k in where}
    by_input = where.get(("input", entry.input))
    if by_input is not None and by_input < old:
        hits.add(by_input)
    return sorted(hits)


def _take(old: Entry, entry: Entry, where: dict) -> bool:
    """Give `entry` the outputs it shares with `old`; True when `old` is left with none."""
    if not old.outputs:  # an input that failed to expand, attempted again
        where.pop(("input", old.input), None)
        return True
    taken = set(entry.outputs)
    old.outputs = [o for o in old.outputs if o not in taken]
    return not old.outputs


def _attempt(entry: Entry, run: int) -> dict:
    extra = {k: entry.fields[k] for k in ("error", "note") if entry.fields.get(k) is not None}
    return {"run": run, "status": entry.status, **extra}
