"""Output heads: relative/metric depth and semantic segmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DepthHead(nn.Module):
    """Fused map (B, F, H/2, W/2) -> depth (B, H, W), non-negative.

    conv3x3 F->F/2, bilinear x2 (align_corners=True), conv3x3 -> 32, ReLU, conv1x1 -> 1, ReLU;
    with `projection`, a conv3x3 + ReLU first.
    """

    def __init__(self, features: int, projection: bool = False) -> None:
        super().__init__()
        self.projection = nn.Conv2d(features, features, 3, padding=1) if projection else None
        self.conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(features // 2, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            x = F.relu(self.projection(x))
        x = F.interpolate(self.conv1(x), scale_factor=2, mode="bilinear", align_corners=True)
        x = F.relu(self.conv2(x))
        return F.relu(self.conv3(x)).squeeze(1)


class SegmentationHead(nn.Module):
    """Fused map (B, F, h, w) -> class logits (B, K, h*s, w*s).

    conv3x3 (no bias), BatchNorm, ReLU, (dropout: identity at inference), conv1x1 -> K, then a
    bilinear x2 upsampling (align_corners=True) when `upsample` (the main head; the auxiliary head
    has none).
    """

    def __init__(self, features: int, num_classes: int, upsample: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(features)
        self.classifier = nn.Conv2d(features, num_classes, 1)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(F.relu(self.bn(self.conv(x))))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return x


class DepthAnythingHead(nn.Module):
    """Depth Anything's head: fused map (B, F, 8h, 8w) -> depth (B, 14h, 14w) for an (h, w) token grid.

    conv3x3 F->F/2, bilinear (align_corners=True) straight to the network input size, conv3x3 ->
    `hidden`, ReLU, conv1x1 -> 1, then ReLU (relative: inverse depth) or sigmoid x `max_depth`
    (metric: metres).
    """

    def __init__(self, features: int, hidden: int = 32, max_depth: float | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(features // 2, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, 1, 1)
        self.max_depth = max_depth

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(self.conv1(x), size=size, mode="bilinear", align_corners=True)
        x = self.conv3(F.relu(self.conv2(x)))
        if self.max_depth is None:
            return F.relu(x).squeeze(1)
        return (torch.sigmoid(x) * self.max_depth).squeeze(1)
