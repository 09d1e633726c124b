"""BiT ResNet-50 stem of the hybrid ViT (the original's timm `resnetv2_50x1_bitm`, non-pre-activation).

Weight-standardised convolutions, GroupNorm, TensorFlow "SAME" padding computed per input size
(the odd extra pixel goes bottom/right), so any multiple-of-32 input works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BitConfig


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) so that a kernel/stride window covers it as TensorFlow's "SAME" does."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    if any(pads):
        x = F.pad(x, pads, value=value)
    return x


class StdConv2d(nn.Conv2d):
    """Conv2d whose weight is standardised per output channel on every call (stored weights are raw)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, eps: float = 1e-8) -> None:
        static = stride == 1 and kernel % 2 == 1
        super().__init__(cin, cout, kernel, stride=stride, padding=kernel // 2 if static else 0, bias=False)
        self.dynamic_pad = not static
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_pad:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        w = self.weight.reshape(1, self.out_channels, -1)
        w = F.batch_norm(w, None, None, training=True, momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return F.conv2d(x, w, None, self.stride, self.padding)


def make_div(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 (at least 8, never below 90% of `value`), as BiT does."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class GroupNormAct(nn.GroupNorm):
    def __init__(self, groups: int, channels: int, act: bool = True) -> None:
        super().__init__(groups, channels, eps=1e-5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.act else x


class Downsample(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv = StdConv2d(cin, cout, 1, stride)
        self.norm = GroupNormAct(groups, cout, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1, each conv followed by GroupNorm; ReLU after the residual sum."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, first: bool) -> None:
        super().__init__()
        mid = make_div(cout * 0.25)
        self.downsample = Downsample(cin, cout, stride, groups) if first else None
        self.conv1 = StdConv2d(cin, mid, 1)
        self.norm1 = GroupNormAct(groups, mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride)
        self.norm2 = GroupNormAct(groups, mid)
        self.conv3 = StdConv2d(mid, cout, 1)
        self.norm3 = GroupNormAct(groups, cout, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class Stage(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int, stride: int, groups: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(Bottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1, groups, i == 0) for i in range(depth))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Stem(nn.Module):
    """7x7/2 weight-standardised conv, GroupNorm + ReLU, 3x3/2 max-pool: (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, width: int, groups: int, dynamic_pool_padding: bool) -> None:
        super().__init__()
        self.conv = StdConv2d(3, width, 7, stride=2)
        self.norm = GroupNormAct(groups, width)
        self.dynamic_pool_padding = dynamic_pool_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        if self.dynamic_pool_padding:
            x = pad_same(x, 3, 2, value=float("-inf"))
        return F.max_pool2d(x, 3, 2)


class ResNetV2(nn.Module):
    """The BiT ResNet: a stem and `len(depths)` bottleneck stages (strides 1, 2, 2)."""

    def __init__(self, cfg: BitConfig) -> None:
        super().__init__()
        self.stem = Stem(cfg.embedding_size, cfg.num_groups, cfg.embedding_dynamic_padding)
        widths = cfg.stage_widths
        cins = (cfg.embedding_size,) + widths[:-1]
        self.stages = nn.ModuleList(
            Stage(cin, cout, depth, 1 if i == 0 else 2, cfg.num_groups)
            for i, (cin, cout, depth) in enumerate(zip(cins, widths, cfg.depths))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> each stage's output: (B, 256, H/4, W/4), (B, 512, H/8, W/8), (B, 1024, H/16, W/16)."""
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class HybridEmbed(nn.Module):
    """ResNet features -> 1x1 projection into ViT tokens; the first two stages are kept for the neck."""

    def __init__(self, cfg: BitConfig, feature_dim: int, dim: int) -> None:
        super().__init__()
        self.backbone = ResNetV2(cfg)
        self.to_tokens = nn.Conv2d(feature_dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], list[torch.Tensor]]:
        """Returns tokens (B, H/16 * W/16, D), the grid (H/16, W/16), and stage 1-2 feature maps."""
        *early, last = self.backbone(x)
        x = self.to_tokens(last)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3]), early[:2]
