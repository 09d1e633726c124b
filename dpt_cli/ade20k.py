"""ADE20K SceneParsing-150: class names (0-based ids) and the palette the original DPT uses."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(resources.files("dpt_cli").joinpath("data/ade20k.json").read_text(encoding="utf-8"))


def id2label() -> dict[int, str]:
    """Class id (0..149, the model's output channel) -> name."""
    return {int(k): v for k, v in _data()["id2label"].items()}


def palette() -> list[tuple[int, int, int]]:
    """150 RGB colours, one per class id (the original's 1-based palette without its black 0)."""
    return [tuple(c) for c in _data()["palette_1based"][1:]]
