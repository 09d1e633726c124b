"""The DPT network: backbone -> neck -> head, tensors in and tensors out."""

from __future__ import annotations

import torch
from torch import nn

from ..config import DEPTH, DPTConfig
from .bit import HybridEmbed
from .heads import DepthHead, SegmentationHead
from .neck import Neck
from .vit import PatchEmbed, VisionTransformer  # noqa: F401  (VisionTransformer: the ViT family)

MULTIPLE = 32


def check_input_size(height: int, width: int) -> None:
    """Raise ValueError unless both sides are positive multiples of 32, naming the nearest valid size."""
    if height % MULTIPLE or width % MULTIPLE or height <= 0 or width <= 0:
        near_h = max(MULTIPLE, round(height / MULTIPLE) * MULTIPLE)
        near_w = max(MULTIPLE, round(width / MULTIPLE) * MULTIPLE)
        raise ValueError(
            f"input size {height}x{width} (HxW) is not a multiple of {MULTIPLE}; nearest valid size is {near_h}x{near_w}"
        )


def build_backbone(c: DPTConfig) -> nn.Module:
    """The backbone of `c`'s family. Every family has `forward_intermediates(images, taps)` ->
    (the four features the neck reads, token grid): see `DPT.taps`."""
    if c.family == "beit":
        from .beit import BeitBackbone

        return BeitBackbone(c.backbone_config)
    if c.family == "swinv2":
        from .swinv2 import Swinv2Backbone

        return Swinv2Backbone(c.backbone_config)
    if c.is_hybrid:
        feature_dim = c.backbone_featmap_shape[1] if c.backbone_featmap_shape else c.backbone_config.stage_widths[-1]
        embed: nn.Module = HybridEmbed(c.backbone_config, feature_dim, c.hidden_size)
    else:
        embed = PatchEmbed(c.num_channels, c.hidden_size, c.patch_size)
    # The stored position-embedding table has the training grid; forward resizes it per input.
    h, w = (c.image_size, c.image_size) if isinstance(c.image_size, int) else c.image_size
    grid = (h // c.patch_size, w // c.patch_size)
    return VisionTransformer(
        embed,
        num_patches=grid[0] * grid[1],
        dim=c.hidden_size,
        depth=c.num_hidden_layers,
        num_heads=c.num_attention_heads,
        mlp_dim=c.intermediate_size,
        act=c.hidden_act,
        eps=c.layer_norm_eps,
        qkv_bias=c.qkv_bias,
    )


def taps(c: DPTConfig) -> tuple[int, ...]:
    """What the backbone's `forward_intermediates` returns: block indices for ViT and BEiT (the
    hybrid's first two features are its ResNet stages), stage indices for Swin-V2."""
    if c.family == "beit":
        return c.backbone_config.out_indices
    if c.family == "swinv2":
        return tuple(range(len(c.backbone_config.depths)))
    return tuple(c.backbone_out_indices[len(c.neck_ignore_stages):])


class DPT(nn.Module):
    """Dense Prediction Transformer for depth or semantic segmentation.

    forward: normalised images (B, 3, H, W), H and W multiples of 32 ->
      depth task: (B, H, W) inverse relative depth (relative models) or metres (metric models);
      segmentation task: (B, K, H, W) class logits.
    """

    def __init__(self, config: DPTConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        self.neck = Neck(config)
        self.taps = taps(config)
        if config.task == DEPTH:
            self.head: nn.Module = DepthHead(config.fusion_hidden_size, config.add_projection)
            self.aux_head = None
        else:
            self.head = SegmentationHead(config.fusion_hidden_size, config.num_labels)
            # Loaded because checkpoints carry it; never run at inference.
            self.aux_head = (
                SegmentationHead(config.fusion_hidden_size, config.num_labels, upsample=False)
                if config.use_auxiliary_head
                else None
            )

    def forward_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the neck's fused maps, deepest first; the last is (B, F, H/2, W/2)."""
        check_input_size(pixel_values.shape[-2], pixel_values.shape[-1])
        features, grid = self.backbone.forward_intermediates(pixel_values, self.taps)
        return self.neck(features, grid)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.head(self.forward_features(pixel_values)[self.config.head_in_index])
        if self.config.task == DEPTH and self.config.is_metric:
            out = to_metric(out, self.config)
        return out


def to_metric(x: torch.Tensor, c: DPTConfig) -> torch.Tensor:
    """Head output -> metres: `scale*x + shift`, inverted with a 1e-8 floor when `invert_depth`."""
    scale = 1.0 if c.depth_scale is None else c.depth_scale
    shift = 0.0 if c.depth_shift is None else c.depth_shift
    x = scale * x + shift
    return 1.0 / x.clamp(min=1e-8) if c.invert_depth else x
