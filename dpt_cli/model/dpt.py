"""The DPT network: backbone -> neck -> head, tensors in and tensors out."""

from __future__ import annotations

import torch
from torch import nn

from ..config import DEPTH, DPTConfig
from .bit import HybridEmbed
from .heads import DepthAnythingHead, DepthHead, SegmentationHead
from .neck import Neck
from .vit import PatchEmbed, VisionTransformer  # noqa: F401  (VisionTransformer: the ViT family)

MULTIPLE = 32


def input_multiple(c: DPTConfig) -> int:
    """What the input's sides must be multiples of: 32 (the patch of 16, then a stride-2 stage), or
    the DINOv2 patch (14: its neck handles odd token grids as the original does)."""
    return c.backbone_config.patch_size if c.family == "dinov2" else MULTIPLE


def check_input_size(height: int, width: int, multiple: int = MULTIPLE) -> None:
    """Raise ValueError unless both sides are positive multiples of `multiple`, naming the nearest valid size."""
    if height % multiple or width % multiple or height <= 0 or width <= 0:
        near_h = max(multiple, round(height / multiple) * multiple)
        near_w = max(multiple, round(width / multiple) * multiple)
        raise ValueError(
            f"input size {height}x{width} (HxW) is not a multiple of {multiple}; nearest valid size is {near_h}x{near_w}"
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
    if c.family == "dinov2":
        from .dinov2 import Dinov2Backbone

        return Dinov2Backbone(c.backbone_config)
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
    if c.family in ("beit", "dinov2"):
        return c.backbone_config.out_indices
    if c.family == "swinv2":
        return tuple(range(len(c.backbone_config.depths)))
    return tuple(c.backbone_out_indices[len(c.neck_ignore_stages):])


class DPT(nn.Module):
    """Dense Prediction Transformer for depth or semantic segmentation.

    forward: normalised images (B, 3, H, W), H and W multiples of 32 (DINOv2: 14) ->
      depth task: (B, H, W) inverse relative depth (relative models) or metres (metric models);
      DINOv2-DPT gives (B, 16 * ceil(h/2), 16 * ceil(w/2)) for an (h, w) token grid, as transformers does
      (the pipeline resizes it to the padded input and crops the padding, as the dinov2 depther does);
      segmentation task: (B, K, H, W) class logits.
    """

    def __init__(self, config: DPTConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        self.neck = Neck(config)
        self.taps = taps(config)
        self.multiple = input_multiple(config)
        if config.is_depth_anything:
            max_depth = config.max_depth if config.is_metric else None
            self.head: nn.Module = DepthAnythingHead(config.fusion_hidden_size, config.head_hidden_size, max_depth)
            self.aux_head = None
        elif config.task == DEPTH:
            self.head = DepthHead(config.fusion_hidden_size, config.add_projection)
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
        """(B, 3, H, W) -> the neck's fused maps, deepest first; the last is (B, F, H/2, W/2) (DINOv2:
        8x the token grid)."""
        check_input_size(pixel_values.shape[-2], pixel_values.shape[-1], self.multiple)
        features, grid = self.backbone.forward_intermediates(pixel_values, self.taps)
        return self.neck(features, grid)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        c = self.config
        fused = self.forward_features(pixel_values)[c.head_in_index]
        if c.is_depth_anything:
            return self.head(fused, tuple(pixel_values.shape[-2:]))
        out = self.head(fused)
        if c.task != DEPTH:
            return out
        if c.depth_scale is not None or c.invert_depth:
            out = to_metric(out, c)
        elif c.family == "dinov2" and c.max_depth is not None:
            # the dinov2 depther: ReLU + 0.001 (the head ends in the ReLU), clamped to its depth range
            out = (out + 0.001).clamp(0.001, c.max_depth)
        return out


def to_metric(x: torch.Tensor, c: DPTConfig) -> torch.Tensor:
    """Head output -> metres: `scale*x + shift`, inverted with a 1e-8 floor when `invert_depth`."""
    scale = 1.0 if c.depth_scale is None else c.depth_scale
    shift = 0.0 if c.depth_shift is None else c.depth_shift
    x = scale * x + shift
    return 1.0 / x.clamp(min=1e-8) if c.invert_depth else x
