"""A key-mapping table between a foreign checkpoint layout and ours, applied strictly.

A table is a list of `Rule(foreign, ours, slot)`. Both sides are templates in which `{name}`
stands for one dotted component that is copied across (`{rest}` may span several). Three
placeholders are special: `{rev}` is a fusion-block index counted from the other end (foreign
layouts number fusion blocks deepest first; we number them by stage), `{one}` is 1-based in the
foreign layout and 0-based in ours, and a rule with a `slot` maps a foreign tensor onto rows
slot*D:(slot+1)*D of a fused tensor of ours made of `parts` such pieces (q, k, v -> qkv: 3;
SwiGLU's gate, up -> fc1: 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch

from ..errors import DPTError

NUM_FUSION = 4  # DPT always has four fusion blocks
NUM_SLOTS = 3  # q, k, v


class KeyMismatch(DPTError, ValueError):
    """Checkpoint keys that no rule maps, or model keys that no checkpoint key fills."""

    def __init__(self, what: str, unexpected: Iterable[str] = (), missing: Iterable[str] = ()) -> None:
        self.unexpected, self.missing = sorted(unexpected), sorted(missing)
        parts = []
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {_short(self.unexpected)}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_short(self.missing)}")
        super().__init__(f"{what}: " + "; ".join(parts))


def _short(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


@dataclass(frozen=True)
class Rule:
    foreign: str
    ours: str
    slot: int | None = None
    parts: int = NUM_SLOTS


def _compile(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[pos : m.start()])
        name = m.group(1)
        out += {"rest": f"(?P<{name}>.+)", "one": r"(?P<one>\d+)", "rev": r"(?P<rev>\d+)"}.get(name, f"(?P<{name}>[^.]+)")
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + "$")


def _fill(template: str, groups: Mapping[str, str], to_ours: bool) -> str:
    values = dict(groups)
    if "rev" in values:
        values["rev"] = str(NUM_FUSION - 1 - int(values["rev"]))
    if "one" in values:
        values["one"] = str(int(values["one"]) + (-1 if to_ours else 1))
    return template.format(**values)


class KeyTable:
    """One foreign layout <-> ours. `to_ours` fuses slotted tensors; `to_foreign` splits them."""

    def __init__(self, name: str, rules: list[Rule]) -> None:
        self.name = name
        self.rules = rules
        self._fwd = [(_compile(r.foreign), r) for r in rules]
        self._bwd = [(_compile(r.ours), r) for r in rules]

    def map_foreign_key(self, key: str) -> tuple[str, int | None] | None:
        rule, name = self._match(key)
        return None if rule is None else (name, rule.slot)

    def _match(self, key: str) -> tuple[Rule | None, str]:
        for pattern, rule in self._fwd:
            m = pattern.match(key)
            if m:
                return rule, _fill(rule.ours, m.groupdict(), to_ours=True)
        return None, ""

    def to_ours(
        self, state: Mapping[str, torch.Tensor], expected: Iterable[str], skip: Iterable[str] = ()
    ) -> dict[str, torch.Tensor]:
        """Rename a foreign state dict into ours; every key must map and every expected key be filled.

        `skip` lists regular expressions of foreign keys that are dropped on purpose.
        """
        skips = [re.compile(s) for s in skip]
        out: dict[str, torch.Tensor] = {}
        pieces: dict[str, dict[int, torch.Tensor]] = {}
        counts: dict[str, int] = {}
        unexpected = []
        for key, tensor in state.items():
            rule, ours = self._match(key)
            if rule is None:
                if not any(s.match(key) for s in skips):
                    unexpected.append(key)
                continue
            if rule.slot is None:
                out[ours] = tensor
            else:
                pieces.setdefault(ours, {})[rule.slot] = tensor
                counts[ours] = rule.parts
        for ours, slots in pieces.items():
            if sorted(slots) == list(range(counts[ours])):
                out[ours] = torch.cat([slots[i] for i in range(counts[ours])], dim=0)
        expected = set(expected)
        unexpected += [k for k in out if k not in expected]
        missing = expected - out.keys()
        if unexpected or missing:
            raise KeyMismatch(f"{self.name} checkpoint does not match the model", unexpected, missing)
        return out

    def to_foreign(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename our state dict into the foreign layout, splitting fused tensors."""
        out: dict[str, torch.Tensor] = {}
        unmapped = []
        for key, tensor in state.items():
            matched = False
            for pattern, rule in self._bwd:
                m = pattern.match(key)
                if not m:
                    continue
                matched = True
                foreign = _fill(rule.foreign, m.groupdict(), to_ours=False)
                if rule.slot is None:
                    out[foreign] = tensor
                    break
                out[foreign] = tensor.chunk(rule.parts, dim=0)[rule.slot]  # a view: no copy
            if not matched:
                unmapped.append(key)
        if unmapped:
            raise KeyMismatch(f"no {self.name} name for our parameters", unexpected=unmapped)
        return out
