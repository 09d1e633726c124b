"""How the depth maps of one group (a clip's frames, photos given with --sequence, or every photo
of a --range auto run) are normalised together.

- One range for the group (the default): the smallest minimum and the largest maximum.
- `smooth` N: each frame's range is the mean of the minima and of the maxima of the N frames
  centred on it (fewer at the ends), for long clips whose depth range changes; a frame's values
  outside its range are clipped in the PNGs and pictures.
- `align`: relative models predict each frame up to its own scale and shift (inverse relative
  depth), so a static scene can still pulse. Each frame is fitted to the previous, already
  aligned, frame by least squares on the inverse depth, d' = s d + t, on the pixels where the two
  agree best (the 80 % with the smallest residuals of a first fit: content that moved is left
  out, refitted three times); the first frame keeps its values. Aligned values replace the raw ones in every output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

FIT_POINTS = 256  # per side: the fit uses at most this many rows and columns of each map
KEEP_FRACTION = 0.8
REFITS = 3


@dataclass(frozen=True)
class Group:
    members: list[int]  # input indices, in order (time order when `sequence`)
    sequence: bool  # frames of one clip, or --sequence: --smooth and --align apply
    mode: str = "auto"  # AUTO, OWN or FIXED (see normalise)
    label: str = "the run's range"  # how notices name its range


@dataclass(frozen=True)
class Normalisation:
    """How one kept map becomes its outputs: depth' = scale * depth + shift, normalised over lo..hi."""

    lo: float
    hi: float
    scale: float = 1.0
    shift: float = 0.0


AUTO, OWN, FIXED = "auto", "own", "fixed"  # one range for the group; each map its own; --range MIN:MAX


def normalise(
    ranges: list[tuple[float, float]], mode: str = AUTO, smooth: int = 0,
    transforms: list[tuple[float, float]] | None = None, fixed: tuple[float, float] | None = None,
) -> list[Normalisation]:
    """Per member, from each member's own (min, max) of its raw map and its (scale, shift)."""
    transforms = transforms or [(1.0, 0.0)] * len(ranges)
    moved = [_moved(r, t) for r, t in zip(ranges, transforms)]
    if mode == FIXED:
        bounds = [fixed] * len(moved)
    elif mode == OWN:
        bounds = [r if r[0] <= r[1] else (0.0, 0.0) for r in moved]
    elif smooth > 1:
        bounds = _running_means(moved, smooth)
    else:
        finite = [r for r in moved if r[0] <= r[1]]
        lo, hi = (min(r[0] for r in finite), max(r[1] for r in finite)) if finite else (0.0, 0.0)
        bounds = [(lo, hi)] * len(moved)
    return [Normalisation(lo, hi, s, t) for (lo, hi), (s, t) in zip(bounds, transforms)]


def align(maps: Iterable[np.ndarray]) -> list[tuple[float, float]]:
    """(scale, shift) per map, in order, fitting each to the previous one as aligned."""
    transforms: list[tuple[float, float]] = []
    previous = None
    for depth in maps:
        sample = _sample(depth)
        s, t = (1.0, 0.0) if previous is None or previous.shape != sample.shape else fit(sample, previous)
        transforms.append((s, t))
        previous = s * sample + t
    return transforms


def fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(s, t) minimising |s x + t - y|^2 over the finite pixels that agree best; (1, 0) when
    the fit is degenerate (a flat map, a scale that is not positive)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok].astype(np.float64), y[ok].astype(np.float64)
    s, t = _least_squares(x, y)
    for _ in range(REFITS if x.size >= 10 else 0):  # trimmed least squares: moved content drops out
        if not np.isfinite(s):
            break
        residual = np.abs(s * x + t - y)
        best = residual <= np.quantile(residual, KEEP_FRACTION)
        s, t = _least_squares(x[best], y[best])
    return (s, t) if np.isfinite(s) and np.isfinite(t) and s > 0 else (1.0, 0.0)


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.size < 2:
        return float("nan"), float("nan")
    mx, my = x.mean(), y.mean()
    var = ((x - mx) ** 2).sum()
    if not var > 0:
        return float("nan"), float("nan")
    s = float(((x - mx) * (y - my)).sum() / var)
    return s, float(my - s * mx)


def _sample(depth: np.ndarray) -> np.ndarray:
    """A regular grid of at most FIT_POINTS x FIT_POINTS pixels of an (H, W) map."""
    h, w = depth.shape
    return depth[:: max(1, h // FIT_POINTS), :: max(1, w // FIT_POINTS)].astype(np.float64)


def _moved(r: tuple[float, float], t: tuple[float, float]) -> tuple[float, float]:
    lo, hi = r
    if not lo <= hi:
        return r
    s, shift = t
    return s * lo + shift, s * hi + shift  # s > 0 (see fit): the order is kept


def _running_means(ranges: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    finite = [r if r[0] <= r[1] else (np.nan, np.nan) for r in ranges]
    lows, highs = np.array([r[0] for r in finite]), np.array([r[1] for r in finite])
    out = []
    for k in range(len(ranges)):
        window = slice(max(0, k - (n - 1) // 2), k + n // 2 + 1)
        lo, hi = lows[window], highs[window]
        known = np.isfinite(lo)
        out.append((float(lo[known].mean()), float(hi[known].mean())) if known.any() else (0.0, 0.0))
    return out

