"""DPT neck: reassemble tokens into image-like feature maps, then fuse them deepest first."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DPTConfig


class Reassemble(nn.Module):
    """Tokens (B, 1 + h*w, D) -> feature map (B, C, h*s, w*s) for one reassemble factor s.

    Readout: "ignore" drops the class token, "add" adds it to every patch token, "project"
    concatenates it to every patch token and applies Linear(2D -> D) + activation.
    """

    def __init__(self, dim: int, channels: int, factor: float, readout: str, act: str) -> None:
        super().__init__()
        self.readout_type = readout
        self.readout = nn.Linear(2 * dim, dim) if readout == "project" else None
        self.act = nn.GELU() if act == "gelu" else nn.ReLU()
        self.project = nn.Conv2d(dim, channels, kernel_size=1)
        if factor > 1:
            self.resize = nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
        elif factor < 1:
            self.resize = nn.Conv2d(channels, channels, kernel_size=3, stride=round(1 / factor), padding=1)
        else:
            self.resize = nn.Identity()

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        cls, x = tokens[:, :1], tokens[:, 1:]
        if self.readout is not None:
            # Linear(cat(x, cls)) split in two: the class token's half is computed once per image,
            # not once per patch, and no (B, N, 2D) concatenation is materialised.
            d = x.shape[-1]
            w, b = self.readout.weight, self.readout.bias
            x = self.act(F.linear(x, w[:, :d]) + F.linear(cls, w[:, d:], b))
        elif self.readout_type == "add":
            x = x + cls
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)
        return self.resize(self.project(x))


class ResidualUnit(nn.Module):
    """x + conv2(relu(bn1(conv1(relu(x))))) with optional BatchNorm after each conv."""

    def __init__(self, channels: int, batch_norm: bool, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(self.conv1(F.relu(x)))
        y = self.bn2(self.conv2(F.relu(y)))
        return x + y


class FusionBlock(nn.Module):
    """out_conv(up2(res2(x + res1(skip)))): merge a stage's features into the running fused map."""

    def __init__(self, channels: int, batch_norm: bool, bias: bool) -> None:
        super().__init__()
        self.res1 = ResidualUnit(channels, batch_norm, bias)
        self.res2 = ResidualUnit(channels, batch_norm, bias)
        self.out_conv = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Fused map -> the next one, resized to `size` (the next stage's map: MiDaS v3.1) or x2
        (DPT). With MiDaS v3.1's reassemble factors and multiple-of-32 inputs the two agree."""
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + self.res1(skip)
        # out_conv(up2(x)) == up2(out_conv(x)): a 1x1 conv and bilinear interpolation (whose weights
        # sum to 1) commute, and the conv costs a quarter at the lower resolution.
        x = self.out_conv(self.res2(x))
        if size is None:
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class Neck(nn.Module):
    """Backbone features -> fused maps, deepest first (the last is at 1/2 the input resolution)."""

    def __init__(self, c: DPTConfig) -> None:
        super().__init__()
        # Swin-V2 stages are feature maps already; the hybrid's first two are ResNet maps.
        ignored = set(range(len(c.neck_hidden_sizes))) if c.family == "swinv2" else set(c.neck_ignore_stages)
        self.reassemble = nn.ModuleList(
            nn.Identity() if i in ignored else Reassemble(c.token_width, ch, f, c.readout_type, c.hidden_act)
            for i, (ch, f) in enumerate(zip(c.neck_hidden_sizes, c.reassemble_factors))
        )
        self.convs = nn.ModuleList(
            nn.Conv2d(ch, c.fusion_hidden_size, 3, padding=1, bias=False) for ch in c.neck_hidden_sizes
        )
        self.fusion = nn.ModuleList(
            FusionBlock(c.fusion_hidden_size, c.use_batch_norm_in_fusion_residual, c.fusion_bias)
            for _ in c.neck_hidden_sizes
        )
        self.ignored = ignored
        # MiDaS v3.1 and Depth Anything resize each fused map to the next stage's size; DPT by x2
        self.follow_sizes = c.family in ("beit", "swinv2") or c.is_depth_anything

    def _next_size(self, maps: list[torch.Tensor], i: int) -> tuple[int, int] | None:
        return tuple(maps[i - 1].shape[-2:]) if self.follow_sizes and i > 0 else None

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]) -> list[torch.Tensor]:
        """features: stage i is a (B, C_i, H_i, W_i) map if i is an ignored stage (hybrid CNN,
        Swin-V2), else tokens (B, 1 + h*w, D). Returns the fused maps (B, F, ., .), deepest stage first."""
        maps = [
            f if i in self.ignored else self.reassemble[i](f, grid) for i, f in enumerate(features)
        ]
        maps = [conv(m) for conv, m in zip(self.convs, maps)]
        fused = [self.fusion[-1](maps[-1], size=self._next_size(maps, len(maps) - 1))]
        for i in range(len(maps) - 2, -1, -1):
            fused.append(self.fusion[i](fused[-1], maps[i], self._next_size(maps, i)))
        return fused
