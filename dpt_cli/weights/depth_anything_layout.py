"""The original Depth Anything layout (V2's `depth_anything_v2_*.pth`, V1's `depth_anything_vit*14.pth`)
<-> ours: one table, and the detection of the architecture from keys and shapes.

What the keys cannot tell comes from the release name (or --variant): V1 or V2 (which blocks feed
the head) and relative or metric with its maximum depth (the files of one size are alike).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from ..config import DPTConfig
from ..errors import UsageError
from .isl_org_layout import NotADPTCheckpoint, shape_of
from .keymap import KeyTable, Rule

_B, _OB = "pretrained.blocks.{n}", "backbone.blocks.{n}"
_R = "depth_head.scratch.refinenet{one}"
TABLE = KeyTable("Depth Anything", [
    *(Rule(f"pretrained.{name}", f"backbone.{name}") for name in ("cls_token", "mask_token", "pos_embed")),
    Rule("pretrained.patch_embed.proj.{p}", "backbone.patch_embed.proj.{p}"),
    *(Rule(f"{_B}.{name}.{{p}}", f"{_OB}.{name}.{{p}}") for name in ("norm1", "norm2", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")),
    Rule(f"{_B}.ls1.gamma", f"{_OB}.layer_scale1"),
    Rule(f"{_B}.ls2.gamma", f"{_OB}.layer_scale2"),
    Rule("pretrained.norm.{p}", "backbone.norm.{p}"),
    Rule("depth_head.projects.{i}.{p}", "neck.reassemble.{i}.project.{p}"),
    Rule("depth_head.resize_layers.{i}.{p}", "neck.reassemble.{i}.resize.{p}"),
    Rule("depth_head.scratch.layer{one}_rn.weight", "neck.convs.{one}.weight"),
    Rule(f"{_R}.resConfUnit{{r}}.conv{{c}}.{{p}}", "neck.fusion.{one}.res{r}.conv{c}.{p}"),
    Rule(f"{_R}.out_conv.{{p}}", "neck.fusion.{one}.out_conv.{p}"),
    Rule("depth_head.scratch.output_conv1.{p}", "head.conv1.{p}"),
    Rule("depth_head.scratch.output_conv2.0.{p}", "head.conv2.{p}"),
    Rule("depth_head.scratch.output_conv2.2.{p}", "head.conv3.{p}"),
])
MARKER = "pretrained.blocks.0.ls1.gamma"
WIDTHS = {"s": 384, "b": 768, "l": 1024}


@dataclass(frozen=True)
class Variant:
    """What a Depth Anything file's name says that its weights do not."""

    name: str  # the --variant value
    version: int  # 1: the last four blocks feed the head; 2: blocks spread through the encoder
    max_depth: float | None = None  # metric models: metres at the sigmoid's top


VARIANTS = {v.name: v for v in (
    Variant("da2", 2), Variant("da2-metric-indoor", 2, 20.0), Variant("da2-metric-outdoor", 2, 80.0), Variant("da1", 1),
)}
_NAMES = (  # release file names -> variant; checked in this order
    (re.compile(r"depth_anything_v2_metric_hypersim_vit([sbl])"), "da2-metric-indoor"),
    (re.compile(r"depth_anything_v2_metric_vkitti_vit([sbl])"), "da2-metric-outdoor"),
    (re.compile(r"depth_anything_v2_vit([sbl])"), "da2"),
    (re.compile(r"depth_anything_vit([sbl])14"), "da1"),
)


def is_depth_anything(state: Mapping[str, torch.Tensor]) -> bool:
    return MARKER in state and "depth_head.projects.0.weight" in state


def choose_variant(file_name: str, requested: str) -> tuple[Variant, str | None]:
    """The variant --variant names, else the one the release name says, and the size letter the name
    gives (s, b, l; None for a renamed file). A renamed file needs --variant."""
    name = file_name.lower()
    hit = next(((pattern.search(name), variant) for pattern, variant in _NAMES if pattern.search(name)), (None, None))
    letter = hit[0].group(1) if hit[0] else None
    if requested != "auto":
        if requested not in VARIANTS:
            raise UsageError(f"unknown variant {requested!r} for a Depth Anything file; presets: {', '.join(VARIANTS)}")
        return VARIANTS[requested], letter
    if hit[1] is None:
        raise UsageError(
            f"{file_name}: a Depth Anything checkpoint whose version (V1, V2) and output (relative, metric) the weights "
            f"cannot tell, and the name is not a release name (depth_anything_v2_vitl.pth, ...): pass --variant ({', '.join(VARIANTS)})"
        )
    return VARIANTS[hit[1]], letter


def detect_config(state: Mapping[str, torch.Tensor], variant: Variant, letter: str | None) -> DPTConfig:
    """The Depth Anything config of an original file, from its keys and shapes and its variant."""
    width = shape_of(state, "pretrained.cls_token")[-1]
    if letter is not None and WIDTHS[letter] != width:
        raise UsageError(f"the file name says ViT-{letter.upper()} ({WIDTHS[letter]} wide), but its encoder is {width} wide")
    layers = sum(1 for k in state if k.startswith("pretrained.blocks.") and k.endswith(".norm1.weight"))
    if layers < 4:
        raise NotADPTCheckpoint(f"not a Depth Anything layout: {layers} transformer blocks")
    taps = list(range(layers - 4, layers)) if variant.version == 1 else ([4, 11, 17, 23] if layers == 24 else [2, 5, 8, 11])
    grid = round((shape_of(state, "pretrained.pos_embed")[1] - 1) ** 0.5)
    patch = shape_of(state, "pretrained.patch_embed.proj.weight")[-1]
    backbone = {
        "model_type": "dinov2", "image_size": grid * patch, "patch_size": patch, "hidden_size": width,
        "num_hidden_layers": layers, "num_attention_heads": width // 64,  # 64-wide heads in every size
        "mlp_ratio": shape_of(state, "pretrained.blocks.0.mlp.fc1.weight")[0] / width, "layer_norm_eps": 1e-6,
        "out_features": [f"stage{i + 1}" for i in taps], "apply_layernorm": True, "reshape_hidden_states": False,
    }
    raw = {
        "model_type": "depth_anything", "backbone_config": backbone, "reassemble_hidden_size": width, "patch_size": patch,
        "neck_hidden_sizes": [shape_of(state, f"depth_head.projects.{i}.weight")[0] for i in range(4)],
        "fusion_hidden_size": shape_of(state, "depth_head.scratch.layer1_rn.weight")[0],
        "head_hidden_size": shape_of(state, "depth_head.scratch.output_conv2.0.weight")[0],
        "depth_estimation_type": "metric" if variant.max_depth else "relative",
        **({"max_depth": variant.max_depth} if variant.max_depth else {}),
    }
    return DPTConfig.from_dict(raw)
