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

from typing import Callable

import numpy as np
import torch

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


def _to_size(x: torch.Tensor, out: np.ndarray, finish: Callable[[torch.Tensor], torch.Tensor], finish_bytes: int) -> np.ndarray:
    """Fill `out` (H, W) with finish(resized tile) for x (k, h, w), tile by tile; returns `out`."""
    size = out.shape
    for rows, cols in tile_slices(size, tile_plan(x, size, finish_bytes)):
        out[rows, cols] = finish(resize(x, size, rows=rows, cols=cols, dtype=COMPUTE)).cpu().numpy()
    return out


def depth_to_size(pred: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(h, w) network-resolution depth (any float dtype) -> (H, W) float32 numpy."""
    out = np.empty(size, dtype=np.float32)
    # finish: the (1, r, c) tile's plane as is; its host copy (from a GPU) is 4 B a pixel
    return _to_size(pred[None], out, lambda tile: tile[0], out.itemsize)


def labels_to_size(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) logits (any float dtype) -> (H, W) class ids: uint8 when K <= 256, else int32."""
    small = logits.shape[0] <= 256
    out = np.empty(size, dtype=np.uint8 if small else np.int32)
    ids = torch.uint8 if small else torch.int32

    def finish(tile: torch.Tensor) -> torch.Tensor:
        return tile.argmax(0).to(ids)  # cast on the device: 1 B a pixel travels, not 8

    # finish: int64 argmax, its cast, and the cast's host copy
    return _to_size(logits, out, finish, ARGMAX_BYTES + 2 * out.itemsize)
