"""The original isl-org DPT checkpoint layout (timm ViT + `scratch` decoder) <-> ours.

One table for the format (the patch-embedding projection is the only key whose meaning depends on
the backbone), and the detection of the architecture from keys and shapes: file names are not
trusted for that.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..config import DEPTH, DPTConfig
from ..errors import DPTError
from .keymap import KeyTable, Rule

_VIT = "pretrained.model"
_BIT = f"{_VIT}.patch_embed.backbone"
_POST = "pretrained.act_postprocess{one}"
_REFINE = "scratch.refinenet{one}"

_VIT_RULES = [
    Rule(f"{_VIT}.cls_token", "backbone.cls_token"),
    Rule(f"{_VIT}.pos_embed", "backbone.pos_embed"),
    Rule(f"{_BIT}.stem.{{rest}}", "backbone.patch_embed.backbone.stem.{rest}"),
    Rule(f"{_BIT}.stages.{{s}}.blocks.{{b}}.{{rest}}", "backbone.patch_embed.backbone.stages.{s}.blocks.{b}.{rest}"),
    Rule(f"{_VIT}.blocks.{{n}}.{{rest}}", "backbone.blocks.{n}.{rest}"),  # same names: norm1, attn.qkv, ...
    Rule(f"{_VIT}.norm.{{p}}", "backbone.norm.{p}"),
]
# The reassemble and fusion stages, named alike in MiDaS v3.1's files (see midas31_layout).
NECK = [
    Rule(f"{_POST}.0.project.0.{{p}}", "neck.reassemble.{one}.readout.{p}"),
    Rule(f"{_POST}.3.{{p}}", "neck.reassemble.{one}.project.{p}"),
    Rule(f"{_POST}.4.{{p}}", "neck.reassemble.{one}.resize.{p}"),
    Rule("scratch.layer{one}_rn.weight", "neck.convs.{one}.weight"),
    Rule(f"{_REFINE}.resConfUnit{{r}}.conv{{c}}.{{p}}", "neck.fusion.{one}.res{r}.conv{c}.{p}"),
    Rule(f"{_REFINE}.resConfUnit{{r}}.bn{{c}}.{{p}}", "neck.fusion.{one}.res{r}.bn{c}.{p}"),
    Rule(f"{_REFINE}.out_conv.{{p}}", "neck.fusion.{one}.out_conv.{p}"),
]
_PATCH_VIT = [Rule(f"{_VIT}.patch_embed.proj.{{p}}", "backbone.patch_embed.proj.{p}")]
_PATCH_HYBRID = [Rule(f"{_VIT}.patch_embed.proj.{{p}}", "backbone.patch_embed.to_tokens.{p}")]
DEPTH_HEAD = [
    Rule("scratch.output_conv.0.{p}", "head.conv1.{p}"),
    Rule("scratch.output_conv.2.{p}", "head.conv2.{p}"),
    Rule("scratch.output_conv.4.{p}", "head.conv3.{p}"),
]
_SEG_HEAD = [
    Rule("scratch.output_conv.0.{p}", "head.conv.{p}"),
    Rule("scratch.output_conv.1.{p}", "head.bn.{p}"),
    Rule("scratch.output_conv.4.{p}", "head.classifier.{p}"),
    Rule("auxlayer.0.{p}", "aux_head.conv.{p}"),
    Rule("auxlayer.1.{p}", "aux_head.bn.{p}"),
    Rule("auxlayer.4.{p}", "aux_head.classifier.{p}"),
]

# Keys the original files carry that inference never uses, dropped on purpose and reported.
SKIPPED = (r"pretrained\.model\.head\.",)  # timm's ImageNet classifier (1000 classes)


def table(hybrid: bool, task: str) -> KeyTable:
    return KeyTable(
        "isl-org",
        _VIT_RULES + NECK + (_PATCH_HYBRID if hybrid else _PATCH_VIT) + (DEPTH_HEAD if task == DEPTH else _SEG_HEAD),
    )


class NotADPTCheckpoint(DPTError):
    pass


# Taps per depth of the ViT (the hybrid uses ResNet stages for the first two).
TAPS = {24: [5, 11, 17, 23], 12: [2, 5, 8, 11]}
_HYBRID_BIT = {
    "depths": [3, 4, 9],
    "hidden_sizes": [256, 512, 1024, 2048],
    "embedding_size": 64,
    "global_padding": "SAME",
    "layer_type": "bottleneck",
    "embedding_dynamic_padding": True,
    "out_features": ["stage1", "stage2", "stage3"],
}


def neck_fields(state: Mapping[str, torch.Tensor]) -> dict:
    """The config fields of the `scratch` decoder and the reassemble stages, read off their shapes."""
    factors = []
    for k in range(1, 5):
        key = f"pretrained.act_postprocess{k}.4.weight"
        kernel = state[key].shape[-1] if key in state else 1
        factors.append(0.5 if kernel == 3 else kernel)  # ConvTranspose k4/s4, k2/s2; Conv k3/s2
    return {
        "readout_type": "project",
        "reassemble_factors": factors,
        "neck_hidden_sizes": [shape_of(state, f"scratch.layer{k}_rn.weight")[1] for k in range(1, 5)],
        "fusion_hidden_size": shape_of(state, "scratch.layer1_rn.weight")[0],
        "head_in_index": -1,
        "use_batch_norm_in_fusion_residual": "scratch.refinenet1.resConfUnit1.bn1.weight" in state,
        "use_bias_in_fusion_residual": "scratch.refinenet1.resConfUnit1.conv1.bias" in state,
        "add_projection": False,
    }


def shape_of(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise NotADPTCheckpoint(f"not an isl-org DPT checkpoint: key '{key}' is missing")
    return tuple(state[key].shape)


def detect_config(state: Mapping[str, torch.Tensor], id2label: dict[int, str]) -> DPTConfig:
    """Infer the architecture of an original checkpoint from its keys and tensor shapes."""
    hybrid = f"{_BIT}.stem.conv.weight" in state
    hidden = shape_of(state, f"{_VIT}.cls_token")[-1]
    layers = sum(1 for k in state if k.startswith(f"{_VIT}.blocks.") and k.endswith(".norm1.weight"))
    if layers not in TAPS:
        raise NotADPTCheckpoint(f"not a DPT release layout: {layers} transformer blocks (expected 12 or 24)")
    grid = round((shape_of(state, f"{_VIT}.pos_embed")[1] - 1) ** 0.5)
    if f"pretrained.act_postprocess{4}.0.project.0.weight" not in state:
        raise NotADPTCheckpoint("not a DPT release layout: no readout projection (act_postprocess4.0.project)")
    neck = neck_fields(state)
    segmentation = "scratch.output_conv.1.running_mean" in state
    raw = {
        "architectures": ["DPTForSemanticSegmentation" if segmentation else "DPTForDepthEstimation"],
        "model_type": "dpt",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 64,  # every release uses 64-wide heads
        "intermediate_size": shape_of(state, f"{_VIT}.blocks.0.mlp.fc1.weight")[0],
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,  # timm's ViT, which the weights were trained with
        "image_size": grid * 16,
        "patch_size": 16,
        "qkv_bias": f"{_VIT}.blocks.0.attn.qkv.bias" in state,
        "backbone_out_indices": TAPS[layers],
        **neck,
        "reassemble_factors": [1, 1, 1, 0.5] if hybrid else neck["reassemble_factors"],
        "use_auxiliary_head": "auxlayer.0.weight" in state,
        "is_hybrid": hybrid,
    }
    if hybrid:
        raw["backbone_config"] = dict(_HYBRID_BIT, model_type="bit")
        raw["backbone_featmap_shape"] = [1, shape_of(state, f"{_VIT}.patch_embed.proj.weight")[1], grid, grid]
        raw["neck_ignore_stages"] = [0, 1]
    if segmentation:
        classes = shape_of(state, "scratch.output_conv.4.weight")[0]
        labels = id2label if classes == len(id2label) else {i: f"class_{i}" for i in range(classes)}
        raw["id2label"] = {str(k): v for k, v in labels.items()}
        raw["label2id"] = {v: k for k, v in labels.items()}
    return DPTConfig.from_dict(raw)
