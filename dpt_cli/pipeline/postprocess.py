"""Back to the photo's size: bicubic (align_corners=False) for depth, bicubic logits + argmax for labels.

Runs on the inference device; only the final (H, W) maps travel to the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from .resample import resize

TILE_BYTES = 256 << 20  # bound on the transient memory of one segmentation tile


def depth_to_size(pred: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(h, w) network-resolution depth -> (H, W) float32 numpy."""
    return resize(pred.float()[None], size)[0].cpu().numpy()


def labels_to_size(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) logits -> (H, W) class ids (uint8 when K <= 256, else int32), tiled by rows."""
    k = logits.shape[0]
    height, width = size
    per_row = k * width * 4 * 4  # the horizontal pass gathers 4 float32 taps per output pixel
    step = max(1, TILE_BYTES // per_row)
    out = np.empty(size, dtype=np.uint8 if k <= 256 else np.int32)
    for r0 in range(0, height, step):
        rows = slice(r0, min(height, r0 + step))
        out[rows] = resize(logits.float(), size, rows=rows).argmax(0).cpu().numpy()
    return out
