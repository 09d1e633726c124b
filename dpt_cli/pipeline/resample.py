"""Separable resampling with taps computed in float64: OpenCV's INTER_CUBIC / INTER_LINEAR results.

torch's own float32 bicubic computes source coordinates in float32 and drifts by ~6e-5 (of the
pixel range) on 600-pixel rows; computing the taps once in float64 and applying them as gathers
keeps the result within ~3e-7 of the exact resampling, on any device and dtype, and lets callers
process output tiles (segmentation logits at full photo size would not fit otherwise).

Arithmetic, per output element of each pass, in the compute dtype and in this order:
    out = ((x[i0] * w0 + x[i1] * w1) + x[i2] * w2) + x[i3] * w3
(one multiply and one add per tap, separate kernels, so no fused multiply-add on any device).
Every element is computed the same way whatever tile it belongs to: a tiled result is bitwise
equal to the untiled one.

Memory: each pass gathers one tap at a time and accumulates in place, so `resize` holds at most
its vertical result, its accumulator and one gathered slice. `tile_bytes` states that peak for a
tile of output rows x columns (taps_bytes + data_bytes); `plan_tiles` picks the largest tile
within a byte budget.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np
import torch

A = -0.75  # OpenCV's and PyTorch's bicubic coefficient
CORNERS = "corners"
# Taps of axes up to this many outputs are cached whole (at most 1 MiB an entry); longer axes (a
# 1 x 10^7 strip would cache 640 MB) get their taps computed per tile, with the same float64 math.
CACHED_AXIS = 1 << 14
# Bytes per output index while its taps exist: float64 temporaries of `_taps` (tracemalloc peak
# 190 B, result included), the offset copy of column indices (32 B), the transposed numpy and
# torch copies of indices and weights (2 x 4 x 16 B); rounded up. Plus a fixed 16 KiB a tile for
# array headers and small tensors.
TAP_BYTES = 512
TAP_OVERHEAD = 16 << 10


def _cubic(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    near = ((A + 2) * t - (A + 3)) * t * t + 1
    far = (((t - 5) * t + 8) * t - 4) * A
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _taps(n_in: int, n_out: int, cubic: bool | str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (int64) and weights (float64), both (stop - start, k), of outputs start..stop-1.

    cubic: True bicubic, False bilinear (both half-pixel centred), CORNERS bilinear with
    align_corners=True (the kernel wherever `cubic` is passed on below).

    Elementwise float64 math: the rows of a range equal the same rows of the whole axis bitwise.
    """
    if cubic == CORNERS:  # bilinear with align_corners=True: the corner pixels' centres coincide
        f = np.arange(start, stop) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        f = (np.arange(start, stop) + 0.5) * (n_in / n_out) - 0.5
    if cubic and cubic != CORNERS:
        s = np.floor(f)
        offsets = np.arange(-1, 3)
        weights = _cubic((f - s)[:, None] - offsets[None, :])
    else:
        f = np.maximum(f, 0.0)  # a no-op with align_corners
        s = np.floor(f)
        t = f - s
        offsets = np.arange(0, 2)
        weights = np.stack([1 - t, t], axis=1)
    idx = np.clip(s[:, None].astype(np.int64) + offsets[None, :], 0, n_in - 1)
    return idx, weights


@lru_cache(maxsize=64)
def taps(n_in: int, n_out: int, cubic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (n_out, k) for half-pixel-centred resampling; borders replicate.

    Cached (photos of a folder share sizes; segmentation tiles share them all): read-only arrays.
    """
    idx, weights = _taps(n_in, n_out, cubic, 0, n_out)
    idx.flags.writeable = weights.flags.writeable = False
    return idx, weights


def taps_of(n_in: int, n_out: int, cubic: bool, part: slice) -> tuple[np.ndarray, np.ndarray]:
    """`taps(n_in, n_out, cubic)[:][part]`, without caching a whole axis longer than CACHED_AXIS."""
    if n_out <= CACHED_AXIS:
        idx, weights = taps(n_in, n_out, cubic)
        return idx[part], weights[part]
    start, stop, step = part.indices(n_out)
    if step != 1:
        raise ValueError("tiles are contiguous ranges")
    return _taps(n_in, n_out, cubic, start, max(start, stop))


def _gather(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """x.index_select(dim, index), as a new contiguous tensor, without copying x whatever its strides."""
    if not x.is_contiguous():
        # index_select would first copy all of x (a tile's source columns, a permuted photo);
        # gather with a broadcast index reads x in place
        shape = list(x.shape)
        shape[dim] = index.numel()
        view = [1] * x.dim()
        view[dim] = -1
        return torch.gather(x, dim, index.view(view).expand(shape))
    if dim == x.dim() - 1 and x.dim() > 2:
        # torch's CPU index_select along the last dim of a 3-D tensor runs ~20x slower than along
        # dim 1 of the same data seen as 2-D (measured 4.5 s vs 0.19 s for 41 M elements)
        return x.view(-1, x.shape[-1]).index_select(1, index).view(*x.shape[:-1], -1)
    return x.index_select(dim, index)


def _apply(x: torch.Tensor, dim: int, idx_t: torch.Tensor, weights_t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Sum over taps t of x.index_select(dim, idx_t[t]) * weights_t[t], in `dtype`.

    x: (..., n_in, ...) any dtype; idx_t, weights_t: (k, n_out) on x's device. Returns x's shape
    with n_out at `dim`. One tap is gathered at a time and the products accumulate in place:
    peak = result + one slice (+ one slice in x's dtype when it must be converted).
    """
    shape = [1] * x.dim()
    shape[dim] = -1  # weights broadcast along every other dim
    acc = None
    for t in range(idx_t.shape[0]):
        g = _gather(x, dim, idx_t[t]).to(dtype)
        g.mul_(weights_t[t].view(shape))
        if acc is None:
            acc = g
        else:
            acc.add_(g)
        del g  # before the next tap's gather
    return acc


def _tap_tensors(
    n_in: int, n_out: int, cubic: bool, part: slice, device: torch.device, dtype: torch.dtype, shift: int = 0,
    host: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, len(part)) indices (minus `shift`) and weights as tensors on `device`; `host`: the
    numpy taps_of(n_in, n_out, cubic, part) when the caller already has them.

    Off the CPU, a whole axis's taps are uploaded once and sliced there: creating a tensor from
    host data on a GPU waits for everything queued before it, and this runs per photo and tile.
    """
    if device.type != "cpu" and n_out <= CACHED_AXIS:
        idx_t, weights_t = _device_taps(n_in, n_out, cubic, device, dtype)
        return idx_t[:, part] - shift, weights_t[:, part]
    idx, weights = host or taps_of(n_in, n_out, cubic, part)
    # (k, n) copies, one contiguous row a tap; the cached arrays stay read-only
    return torch.tensor(np.ascontiguousarray((idx - shift).T), device=device), torch.tensor(np.ascontiguousarray(weights.T), device=device, dtype=dtype)


@lru_cache(maxsize=64)
def _device_taps(n_in: int, n_out: int, cubic: bool, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    idx, weights = taps(n_in, n_out, cubic)
    return torch.from_numpy(idx.T.copy()).to(device), torch.from_numpy(weights.T.copy()).to(dtype).to(device)


def resize(
    x: torch.Tensor,
    size: tuple[int, int],
    cubic: bool = True,
    rows: slice | None = None,
    cols: slice | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Resize the last two dims of `x` (..., h, w) to `size` (H, W): (..., rows, cols) of the result.

    `rows` and `cols` (contiguous slices of 0..H and 0..W) compute only that tile; the vertical pass
    then reads only the source columns the tile's horizontal taps reach. `dtype` is the compute and
    result dtype (default float64 for float64 input, else float32); x is converted one gathered
    slice at a time. Taps are float64-exact; see the module docstring for the per-element math.
    """
    h, w = size
    rows, cols = rows or slice(0, h), cols or slice(0, w)
    horizontal = taps_of(x.shape[-1], w, cubic, cols)
    ix = horizontal[0]
    lo, hi = (int(ix.min()), int(ix.max()) + 1) if ix.size else (0, 0)
    dtype = dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
    vertical = _apply(x[..., lo:hi], x.dim() - 2, *_tap_tensors(x.shape[-2], h, cubic, rows, x.device, dtype), dtype)
    across = _tap_tensors(x.shape[-1], w, cubic, cols, x.device, dtype, shift=lo, host=horizontal)
    return _apply(vertical, x.dim() - 1, *across, dtype)


# --- memory budget ---------------------------------------------------------------------------


def span(n_in: int, n_out: int, n: int) -> int:
    """Most source indices (of n_in) that the taps of n consecutive outputs (of n_out) can reach.

    Source centres of n consecutive outputs lie (n - 1) * n_in / n_out apart, so their floors take
    at most floor of that + 2 values, +1 for float64 rounding at integer boundaries; cubic taps add
    3 more (-1..+2; linear taps fewer). Clipping at the borders only shrinks the range.
    """
    return min(n_in, (n - 1) * n_in // n_out + 6)


def tile_bytes(
    k: int,
    src: tuple[int, int],
    dst: tuple[int, int],
    rows: int,
    cols: int,
    *,
    itemsize: int = 4,
    convert_itemsize: int = 0,
    finish_bytes: int = 0,
) -> int:
    """Peak transient bytes of `resize` for one tile of rows x cols outputs, and of its caller's finish.

    k: product of the leading dims of x (channels, classes); src: x's (h, w); dst: the full output
    (H, W); itemsize: bytes of the compute dtype; convert_itemsize: bytes of x's dtype when it is
    not the compute dtype (0 when it is); finish_bytes: bytes per output pixel that the caller
    allocates while still holding the (k, rows, cols) result (argmax, casts, host copies).

    = taps_bytes + data_bytes: see those. x itself and the caller's full-size output are not
    transient and not counted.
    """
    sizes = dict(itemsize=itemsize, convert_itemsize=convert_itemsize, finish_bytes=finish_bytes)
    return taps_bytes(dst, rows, cols) + data_bytes(k, src, dst, rows, cols, **sizes)


def taps_bytes(dst: tuple[int, int], rows: int, cols: int) -> int:
    """Bytes of the taps while a tile is computed: TAP_BYTES per output index whose taps are made
    (a whole axis of dst when it is cached, else the tile's own range) + TAP_OVERHEAD."""
    axis = [n if n <= CACHED_AXIS else m for n, m in zip(dst, (rows, cols))]
    return TAP_BYTES * sum(axis) + TAP_OVERHEAD


def data_bytes(
    k: int, src: tuple[int, int], dst: tuple[int, int], rows: int, cols: int, *, itemsize: int = 4, convert_itemsize: int = 0, finish_bytes: int = 0
) -> int:
    """Peak bytes of the tensors of one tile (arguments as `tile_bytes`): the largest phase.

    With S = span(w, W, cols) source columns read by the tile:
      vertical:   accumulator (k, rows, S) + one gathered tap (k, rows, S) [+ its unconverted copy];
      horizontal: vertical result (k, rows, S) + accumulator (k, rows, cols) + one gathered tap;
      finish:     result (k, rows, cols) + finish_bytes * rows * cols.
    """
    s = span(src[1], dst[1], cols)
    vertical = k * rows * s * (2 * itemsize + convert_itemsize)
    horizontal = k * rows * (s + 2 * cols) * itemsize
    finish = k * rows * cols * itemsize + rows * cols * finish_bytes
    return max(vertical, horizontal, finish)


def _largest(fits, hi: int) -> int:
    """Largest n in 1..hi with fits(n), for fits monotone (true then false); 1 when none fits."""
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan_tiles(
    k: int, src: tuple[int, int], dst: tuple[int, int], budget: int, target: int | None = None, **sizes: int
) -> tuple[int, int]:
    """(rows, cols) of the largest tiles within `budget` (tile_bytes) and `target` (data_bytes).

    budget bounds memory; target, when given, is a speed preference for the tensors' share (tiles
    that stay in cache and under malloc's mmap threshold run ~2x faster than 256 MiB ones) and is
    exceeded only by a single-pixel tile. Whole output rows when one fits (no column seams, fewest
    tiles), else one row of as many columns as fit. Only when a single 1 x 1 tile exceeds the
    budget (k beyond ~budget / 48 B: millions of classes) is the result (1, 1) over budget.
    `sizes`: itemsize, convert_itemsize, finish_bytes as for tile_bytes.
    """
    height, width = dst

    def fits(r: int, c: int) -> bool:
        within = tile_bytes(k, src, dst, r, c, **sizes) <= budget
        return within and (target is None or data_bytes(k, src, dst, r, c, **sizes) <= target)

    if fits(1, width):
        return _largest(lambda r: fits(r, width), height), width
    return 1, _largest(lambda c: fits(1, c), width)


def tile_slices(size: tuple[int, int], tile: tuple[int, int]) -> Iterator[tuple[slice, slice]]:
    """(rows, cols) slices covering `size` (H, W) in tiles of `tile` (rows, cols), row-major."""
    height, width = size
    for r0 in range(0, height, tile[0]):
        for c0 in range(0, width, tile[1]):
            yield slice(r0, min(height, r0 + tile[0])), slice(c0, min(width, c0 + tile[1]))
