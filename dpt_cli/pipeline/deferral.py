"""Which inputs wait for their group's range before their PNGs, pictures and videos are written,
and how each is normalised once every member has been through the model (see `autorange` for
the kept maps, `sequences` for the rules).

Groups: each video clip's frames (one range per clip unless --range per-frame or MIN:MAX); the
photos given with --sequence (the same, in input order); the other photos of a --range auto run.
With --align a sequence's raw outputs wait too: alignment changes their values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import sequences
from .autorange import KeptMaps, key_of, remove_stale
from .inputs import InputItem
from .manifest import FAILED, OK, PENDING, SKIPPED, FileRecord
from ..text import shown
from .sequences import AUTO, FIXED, OWN, Group, Normalisation

PHOTO_FORMATS = frozenset({"side-by-side", "video-side-by-side", "ply"})  # outputs that show the photo


@dataclass(frozen=True)
class Policy:
    """What the command line said about ranges (see runner.Options)."""

    value_range: tuple[float, float] | None = None  # --range MIN:MAX
    auto_range: bool = False  # --range auto
    per_frame: bool = False  # --range per-frame
    sequence: bool = False  # --sequence: the photos are frames of one sequence
    smooth: int = 0
    align: bool = False

    @classmethod
    def of(cls, options) -> "Policy":
        """From the runner's Options, or the command's options dict."""
        get = options.get if isinstance(options, dict) else (lambda name, default: getattr(options, name, default))
        return cls(get("value_range", None), get("auto_range", False), get("per_frame", False), get("sequence", False),
                   get("smooth", 0) or 0, get("align", False))

    def mode(self, sequence: bool) -> str | None:
        """How a sequence (or the plain photos) is normalised; None: each photo alone, at once."""
        if self.value_range is not None:
            return FIXED
        if self.per_frame:
            return OWN
        return AUTO if sequence or self.auto_range else None


def groups_of(items: list[InputItem], policy: Policy) -> list[Group]:
    """The groups whose members wait for each other (a group normalised per member waits only for
    --align)."""
    clips: dict[int, list[int]] = {}
    photos = []
    for i, item in enumerate(items):
        (clips.setdefault(id(item.clip), []) if item.clip is not None else photos).append(i)
    candidates = [(members, True) for members in clips.values()]
    if photos:
        candidates.append((photos, policy.sequence))
    groups = []
    for members, sequence in candidates:
        mode = policy.mode(sequence)
        if mode == AUTO or (mode is not None and sequence and policy.align):
            clip = items[members[0]].clip
            label = f"the range of {shown(clip.path)} ({len(members)} frames)" if clip is not None else "the run's range"
            groups.append(Group(members, sequence, mode, label))
    return groups


def space_needed(items: list[InputItem], planned: list[dict[str, Path]], policy: Policy) -> int:
    """Bytes the kept maps of the clips' frames will take at most (a photo's size is not known
    before it is decoded: not counted)."""
    total = 0
    for group in groups_of(items, policy):
        for i in group.members:
            clip, outs = items[i].clip, planned[i]
            later = set(KeptMaps.split(outs, everything=group.sequence and policy.align)[1]) if outs else set()
            if clip is not None and later:
                total += clip.info.width * clip.info.height * (4 + (3 if later & PHOTO_FORMATS else 0))
    return total


class Deferral:
    def __init__(
        self, items: list[InputItem], planned: list[dict[str, Path]], targets: list[dict[str, Path]], policy: Policy,
        folder: Path, where: str, settings: str, fresh: bool = False,
    ) -> None:
        """`where`, `settings`: the fingerprints of autorange.KeptMaps; `fresh`: reuse no kept map."""
        self.policy, self.targets = policy, targets
        self.group_of: dict[int, Group] = {}
        self.keys: dict[int, str] = {}
        sources: dict[Path, str] = {}
        for group in groups_of(items, policy):
            for i in group.members:
                self.group_of[i] = group
                if planned[i]:
                    item = items[i]
                    if item.path not in sources:
                        sources[item.path] = _identity(item)
                    self.keys[i] = key_of(next(iter(planned[i].values())), f"{sources[item.path]}#{item.frame}")
        waiting = [i for i in self.group_of if self.split(i, targets[i])[1]]
        if not waiting and folder.is_dir():
            remove_stale(folder, where)  # what a dead run with other settings left: never usable
        self.kept = KeptMaps(folder, where, settings, fresh) if waiting else None
        # maps an interrupted run kept: these inputs skip the model
        self.resumed = {i for i in waiting if self.kept.has(self.keys[i], self._photo(i))}

    def split(self, i: int, outs: dict[str, Path]) -> tuple[dict[str, Path], dict[str, Path]]:
        """(written at once, written once the group's range is known)."""
        group = self.group_of.get(i)
        if group is None:
            return outs, {}
        return KeptMaps.split(outs, everything=group.sequence and self.policy.align)

    def keep(self, i: int, depth: np.ndarray, photo: np.ndarray | None) -> None:
        self.kept.keep(self.keys[i], depth, photo if self._photo(i) else None)

    def _photo(self, i: int) -> bool:
        return bool(PHOTO_FORMATS & set(self.split(i, self.targets[i])[1]))

    def finish(self, records: list[FileRecord], notice: Callable[[str], None]) -> Iterator[tuple[int, Normalisation, dict[str, Path]]]:
        """Every waiting input, group by group in order: (index, its normalisation, the outputs to
        write now); `load` gives its map."""
        if self.kept is None:
            return
        for group in {id(g): g for g in self.group_of.values()}.values():
            yield from self._finish(group, records, notice)

    def _finish(self, group: Group, records: list[FileRecord], notice: Callable[[str], None]):
        kept = self.kept
        known = [i for i in group.members if i in self.keys and self.keys[i] in kept.ranges]
        todo = [i for i in known if records[i].status == PENDING and kept.has(self.keys[i])]
        if not todo:
            return
        unknown = [i for i in group.members if i not in known and records[i].status in (OK, SKIPPED)]
        if unknown and group.mode == AUTO:
            notice(f"{len(unknown)} input(s) of {group.label} written by an earlier run have no kept range: "
                   "this run's range leaves them out (--overwrite rewrites them all)")
        transforms = None
        if group.sequence and self.policy.align:
            transforms = sequences.align(kept.load(self.keys[i])[0] for i in known)
        ranges = [kept.ranges[self.keys[i]] for i in known]
        plan = sequences.normalise(ranges, group.mode, self.policy.smooth if group.sequence else 0, transforms, self.policy.value_range)
        if group.mode == AUTO:
            how = f"a running range over {self.policy.smooth} frames" if group.sequence and self.policy.smooth > 1 else f"{plan[0].lo:.6g}..{plan[0].hi:.6g}"
            notice(f"writing PNGs, pictures and videos over {group.label}: {how}")
        norm = dict(zip(known, plan))
        for i in todo:
            yield i, norm[i], self.targets[i] if i in self.resumed else self.split(i, self.targets[i])[1]

    def load(self, i: int, n: Normalisation) -> tuple[np.ndarray, np.ndarray | None]:
        """Input `i`'s kept map, scaled and shifted as aligned, and its photo if kept."""
        depth, photo = self.kept.load(self.keys[i])
        if (n.scale, n.shift) != (1.0, 0.0):
            depth = (depth.astype(np.float64) * n.scale + n.shift).astype(np.float32)
        return depth, photo

    def ranges(self) -> dict[int, tuple[float, float]]:
        """Each kept input's own min and max, by index."""
        if self.kept is None:
            return {}
        return {i: self.kept.ranges[k] for i, k in self.keys.items() if k in self.kept.ranges}

    def close(self, records: list[FileRecord], interrupted: bool) -> None:
        """Remove the kept maps once every input that waited is done; else keep them for the run
        that resumes: an input refused before the run (its output existed) or whose map is kept
        (its video failed) still needs its group's range. One that could not be decoded or run
        never had a map: it does not hold the folder."""
        if self.kept is None:
            return

        def unfinished(i: int) -> bool:
            status = records[i].status
            return status not in (OK, SKIPPED) and (status != FAILED or not self.targets[i] or self.keys.get(i) in self.kept.ranges)

        self.kept.close(not interrupted and not any(unfinished(i) for i in self.group_of))


def _identity(item: InputItem) -> str:
    """What a kept map is made from, beyond its output's name: the input's size and time."""
    try:
        st = os.stat(item.path)
    except (OSError, ValueError):
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"
