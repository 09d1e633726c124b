"""Colour lookup tables shipped with the package (no matplotlib at run time)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

NAMES = ("turbo", "inferno", "magma", "viridis", "Spectral_r", "gray")


@lru_cache(maxsize=None)
def lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB table."""
    data = json.loads(resources.files("dpt_cli").joinpath("data/colormaps.json").read_text(encoding="utf-8"))
    return np.frombuffer(bytes.fromhex(data["tables"][name]), dtype=np.uint8).reshape(256, 3)


def apply(unit: np.ndarray, name: str) -> np.ndarray:
    """(H, W) values in 0..1 -> (H, W, 3) uint8 RGB."""
    index = np.clip(np.nan_to_num(unit) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return lut(name)[index]
