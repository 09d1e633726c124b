"""Back to the photo's size: bicubic (align_corners=False) for depth, bicubic logits + argmax for labels.

Runs on the inference device in tiles of output rows x columns; only finished tiles travel to the
CPU, into the one full-size allocation: the (H, W) result. Every tile's transient memory (taps,
gathers, accumulators, argmax, casts, host copy), as counted by `resample.tile_bytes`, stays
within TILE_BYTES = 256 MiB for any photo shape, class count, network size and logits dtype; e.g.
a 100000 x 1 segmentation with 150 classes from a 480 x 32 network output needs ~7.7 KB a row
(4 taps of 150 float32 plus their accumulator over <= 6 source columns, x 8 B), a 9000 x 9000
depth map ~74 KB a row (480 source + 2 x 9000 float32 for the horizontal pass), and the one row
of a 1 x 100000 strip ~164 MB, so rows split into columns where needed. Within that bound, tiles
aim at TILE_TARGET = 16 MiB of tensors: measured 2-3x faster than 256 MiB tiles on CPU (cache,
and no fresh mmap per buffer).
Results are bitwise those of the untiled computation (see `resample`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, TypeVar

import numpy as np
import torch

from .preprocess import CORNERS, CUBIC, LINEAR, padding
from .resample import CORNERS as CORNERS_KERNEL
from .resample import plan_tiles, resize, tile_slices

TILE_BYTES = 256 << 20  # bound on the transient memory of the resize back to photo size
TILE_TARGET = 16 << 20  # preferred tensor bytes of a tile (speed; TILE_BYTES is the bound)
COMPUTE = torch.float32  # the resampling is float32 math whatever the network's dtype
ARGMAX_BYTES = 8  # torch's argmax returns int64


def tile_plan(x: torch.Tensor, size: tuple[int, int], finish_bytes: int) -> tuple[int, int]:
    """(rows, cols) of the tiles for resizing x (k, h, w) to `size` within TILE_BYTES (aiming at TILE_TARGET).

    finish_bytes: bytes per output pixel allocated while a tile's (k, rows, cols) float32 result
    is alive (argmax, casts, the host copy).
    """
    convert = 0 if x.dtype == COMPUTE else x.element_size()
    itemsize = COMPUTE.itemsize
    sizes = dict(itemsize=itemsize, convert_itemsize=convert, finish_bytes=finish_bytes)
    return plan_tiles(x.shape[0], tuple(x.shape[-2:]), size, TILE_BYTES, TILE_TARGET, **sizes)


Out = TypeVar("Out", np.ndarray, torch.Tensor)


def _to_size(
    x: torch.Tensor, out: Out, finish: Callable[[torch.Tensor], torch.Tensor], finish_bytes: int,
    kernel: bool | str = True, padded: tuple[int, int] | None = None,
) -> Out:
    """Fill `out` (H, W) with finish(resized tile) for x (k, h, w), tile by tile; returns `out`.

    `out` is a numpy array (tiles travel to the host one by one) or a tensor on x's device.
    kernel: see `resample.resize`. padded: x is resized to this (Hp, Wp) instead, of which `out`
    is the centred (H, W) window (the photo inside its centre-padded network input).
    """
    size = tuple(out.shape)
    full, (top, left) = (padded, padding(size, padded)) if padded else (size, (0, 0))
    on_host = isinstance(out, np.ndarray)
    for rows, cols in tile_slices(size, tile_plan(x, size, finish_bytes)):
        window = slice(rows.start + top, rows.stop + top), slice(cols.start + left, cols.stop + left)
        tile = finish(resize(x, full, kernel, rows=window[0], cols=window[1], dtype=COMPUTE))
        out[rows, cols] = tile.cpu().numpy() if on_host else tile
    return out


def depth_to_size(
    pred: torch.Tensor, size: tuple[int, int], on_device: bool = False, back: str = CUBIC, padded: tuple[int, int] | None = None
) -> np.ndarray | torch.Tensor:
    """(h, w) network-resolution depth (any float dtype) -> (H, W) float32: numpy, or a tensor
    on pred's device with `on_device` (the same values).

    back: the family's resize (`preprocess.CUBIC`, `LINEAR`, `CORNERS`). padded: the centre-padded
    network input's size, when the photo was padded rather than resized (DINOv2-DPT): the depth is
    resized to it and the padding cropped, as the dinov2 depther does.
    """
    out = torch.empty(size, dtype=COMPUTE, device=pred.device) if on_device else np.empty(size, dtype=np.float32)
    kernel = {CUBIC: True, LINEAR: False, CORNERS: CORNERS_KERNEL}[back]
    # finish: the (1, r, c) tile's plane as is; its host copy (from a GPU) is 4 B a pixel
    return _to_size(pred[None], out, lambda tile: tile[0], 4, kernel, padded)


@lru_cache(maxsize=8)
def _range_on(value_range: tuple[float, float], device: torch.device) -> torch.Tensor:
    """--range as a float64 tensor on `device`, made once (made per photo, it would wait on the GPU)."""
    return torch.tensor(value_range, dtype=torch.float64).to(device)


def quantise_on_device(
    depth: torch.Tensor, value_range: tuple[float, float] | None, bits: tuple[int, ...]
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(H, W) float32 depth -> ((lo, hi) as a float64 tensor, {bits: (H, W) integer map}), on its device.

    Bitwise what `writers.normalise` then `writers.quantise` give on the host, without a device
    sync: numpy computes (depth - lo) / (hi - lo) with lo in float32 and hi - lo rounded from
    float64, so the same roundings happen here; an empty range gives zeros, as there. 16-bit maps
    come back as int32 (exact values; every device converts to it), 8-bit as uint8.
    """
    if value_range is None:
        bounds = torch.stack([depth.min(), depth.max()]).to(torch.float64)
    else:
        bounds = _range_on(value_range, depth.device)
    span = bounds[1] - bounds[0]
    unit = ((depth - bounds[0].to(torch.float32)) / span.to(torch.float32)).clamp_(0.0, 1.0)
    unit = torch.where(span > float(np.finfo(np.float32).eps), unit, torch.zeros((), device=depth.device))
    maps = {b: (unit * float(2**b - 1)).to(torch.int32 if b == 16 else torch.uint8) for b in bits}
    return bounds, maps


def labels_to_size(logits: torch.Tensor, size: tuple[int, int], on_device: bool = False) -> np.ndarray | torch.Tensor:
    """(K, h, w) logits (any float dtype) -> (H, W) class ids: uint8 when K <= 256, else int32;
    numpy, or a tensor on the logits' device with `on_device`."""
    small = logits.shape[0] <= 256
    ids = torch.uint8 if small else torch.int32
    if on_device:
        out = torch.empty(size, dtype=ids, device=logits.device)
    else:
        out = np.empty(size, dtype=np.uint8 if small else np.int32)

    def finish(tile: torch.Tensor) -> torch.Tensor:
        return tile.argmax(0).to(ids)  # cast on the device: 1 B a pixel travels, not 8

    # finish: int64 argmax, its cast, and the cast's host copy
    return _to_size(logits, out, finish, ARGMAX_BYTES + 2 * (1 if small else 4))
