"""The transformers (Hugging Face) DPT key layout <-> ours: one table per backbone family.

The neck and heads are named alike in every family. BEiT's names on disk (the hub files, and what
transformers' `save_pretrained` writes) differ from the ones transformers 5 uses in memory
(`backbone.beit.layers.N.attention.q_proj`, which a `torch.save(model.state_dict())` holds): both
are read, each through its own table; we write the on-disk names.
"""

from __future__ import annotations

from typing import Iterable

from ..config import DEPTH, DPTConfig
from .keymap import KeyTable, Rule

_BIT = "dpt.embeddings.backbone.bit"
_LAYER = "dpt.encoder.layer.{n}"
_FUSE = "neck.fusion_stage.layers.{rev}"

VIT = [
    # ViT embeddings (plain: patch conv; hybrid: ResNet + 1x1 projection)
    Rule("dpt.embeddings.cls_token", "backbone.cls_token"),
    Rule("dpt.embeddings.position_embeddings", "backbone.pos_embed"),
    Rule("dpt.embeddings.patch_embeddings.projection.{p}", "backbone.patch_embed.proj.{p}"),
    Rule("dpt.embeddings.projection.{p}", "backbone.patch_embed.to_tokens.{p}"),
    Rule(f"{_BIT}.embedder.convolution.weight", "backbone.patch_embed.backbone.stem.conv.weight"),
    Rule(f"{_BIT}.embedder.norm.{{p}}", "backbone.patch_embed.backbone.stem.norm.{p}"),
    Rule(f"{_BIT}.encoder.stages.{{s}}.layers.{{b}}.{{rest}}", "backbone.patch_embed.backbone.stages.{s}.blocks.{b}.{rest}"),
    # transformer blocks; q, k, v become one fused qkv projection
    Rule(f"{_LAYER}.attention.attention.query.{{p}}", "backbone.blocks.{n}.attn.qkv.{p}", slot=0),
    Rule(f"{_LAYER}.attention.attention.key.{{p}}", "backbone.blocks.{n}.attn.qkv.{p}", slot=1),
    Rule(f"{_LAYER}.attention.attention.value.{{p}}", "backbone.blocks.{n}.attn.qkv.{p}", slot=2),
    Rule(f"{_LAYER}.attention.output.dense.{{p}}", "backbone.blocks.{n}.attn.proj.{p}"),
    Rule(f"{_LAYER}.intermediate.dense.{{p}}", "backbone.blocks.{n}.mlp.fc1.{p}"),
    Rule(f"{_LAYER}.output.dense.{{p}}", "backbone.blocks.{n}.mlp.fc2.{p}"),
    Rule(f"{_LAYER}.layernorm_before.{{p}}", "backbone.blocks.{n}.norm1.{p}"),
    Rule(f"{_LAYER}.layernorm_after.{{p}}", "backbone.blocks.{n}.norm2.{p}"),
    Rule("dpt.layernorm.{p}", "backbone.norm.{p}"),
]

NECK = [
    # neck: reassemble, 3x3 convs, fusion (transformers numbers fusion blocks deepest first)
    Rule("neck.reassemble_stage.readout_projects.{i}.0.{p}", "neck.reassemble.{i}.readout.{p}"),
    Rule("neck.reassemble_stage.layers.{i}.projection.{p}", "neck.reassemble.{i}.project.{p}"),
    Rule("neck.reassemble_stage.layers.{i}.resize.{p}", "neck.reassemble.{i}.resize.{p}"),
    Rule("neck.convs.{i}.weight", "neck.convs.{i}.weight"),
    Rule(f"{_FUSE}.projection.{{p}}", "neck.fusion.{rev}.out_conv.{p}"),
    Rule(f"{_FUSE}.residual_layer{{r}}.convolution{{c}}.{{p}}", "neck.fusion.{rev}.res{r}.conv{c}.{p}"),
    Rule(f"{_FUSE}.residual_layer{{r}}.batch_norm{{c}}.{{p}}", "neck.fusion.{rev}.res{r}.bn{c}.{p}"),
]

DEPTH_HEAD = [
    Rule("head.projection.{p}", "head.projection.{p}"),
    Rule("head.head.0.{p}", "head.conv1.{p}"),
    Rule("head.head.2.{p}", "head.conv2.{p}"),
    Rule("head.head.4.{p}", "head.conv3.{p}"),
]

SEGMENTATION_HEAD = [
    Rule("head.head.0.{p}", "head.conv.{p}"),
    Rule("head.head.1.{p}", "head.bn.{p}"),
    Rule("head.head.4.{p}", "head.classifier.{p}"),
    Rule("auxiliary_head.head.0.{p}", "aux_head.conv.{p}"),
    Rule("auxiliary_head.head.1.{p}", "aux_head.bn.{p}"),
    Rule("auxiliary_head.head.4.{p}", "aux_head.classifier.{p}"),
]

_BEIT = "backbone.encoder.layer.{n}"
_BEIT_ATTN = f"{_BEIT}.attention.attention"
_OURS_BEIT = "backbone.blocks.{n}"
BEIT = [
    Rule("backbone.embeddings.cls_token", "backbone.cls_token"),
    Rule("backbone.embeddings.patch_embeddings.projection.{p}", "backbone.patch_embed.proj.{p}"),
    Rule(f"{_BEIT_ATTN}.query.weight", f"{_OURS_BEIT}.attn.qkv.weight", slot=0),
    Rule(f"{_BEIT_ATTN}.key.weight", f"{_OURS_BEIT}.attn.qkv.weight", slot=1),
    Rule(f"{_BEIT_ATTN}.value.weight", f"{_OURS_BEIT}.attn.qkv.weight", slot=2),
    Rule(f"{_BEIT_ATTN}.query.bias", f"{_OURS_BEIT}.attn.q_bias"),
    Rule(f"{_BEIT_ATTN}.value.bias", f"{_OURS_BEIT}.attn.v_bias"),
    Rule(f"{_BEIT_ATTN}.relative_position_bias.relative_position_bias_table", f"{_OURS_BEIT}.attn.bias_table"),
    Rule(f"{_BEIT}.attention.output.dense.{{p}}", f"{_OURS_BEIT}.attn.proj.{{p}}"),
    Rule(f"{_BEIT}.layernorm_before.{{p}}", f"{_OURS_BEIT}.norm1.{{p}}"),
    Rule(f"{_BEIT}.layernorm_after.{{p}}", f"{_OURS_BEIT}.norm2.{{p}}"),
    Rule(f"{_BEIT}.intermediate.dense.{{p}}", f"{_OURS_BEIT}.mlp.fc1.{{p}}"),
    Rule(f"{_BEIT}.output.dense.{{p}}", f"{_OURS_BEIT}.mlp.fc2.{{p}}"),
    Rule(f"{_BEIT}.lambda_1", f"{_OURS_BEIT}.layer_scale1"),
    Rule(f"{_BEIT}.lambda_2", f"{_OURS_BEIT}.layer_scale2"),
]
_MEM = "backbone.beit.layers.{n}"
BEIT_IN_MEMORY = [
    Rule("backbone.beit.embeddings.cls_token", "backbone.cls_token"),
    Rule("backbone.beit.embeddings.patch_embeddings.projection.{p}", "backbone.patch_embed.proj.{p}"),
    Rule(f"{_MEM}.attention.q_proj.weight", f"{_OURS_BEIT}.attn.qkv.weight", slot=0),
    Rule(f"{_MEM}.attention.k_proj.weight", f"{_OURS_BEIT}.attn.qkv.weight", slot=1),
    Rule(f"{_MEM}.attention.v_proj.weight", f"{_OURS_BEIT}.attn.qkv.weight", slot=2),
    Rule(f"{_MEM}.attention.q_proj.bias", f"{_OURS_BEIT}.attn.q_bias"),
    Rule(f"{_MEM}.attention.v_proj.bias", f"{_OURS_BEIT}.attn.v_bias"),
    Rule(f"{_MEM}.relative_position_bias.relative_position_bias_table", f"{_OURS_BEIT}.attn.bias_table"),
    Rule(f"{_MEM}.attention.o_proj.{{p}}", f"{_OURS_BEIT}.attn.proj.{{p}}"),
    Rule(f"{_MEM}.layernorm_before.{{p}}", f"{_OURS_BEIT}.norm1.{{p}}"),
    Rule(f"{_MEM}.layernorm_after.{{p}}", f"{_OURS_BEIT}.norm2.{{p}}"),
    Rule(f"{_MEM}.mlp.fc1.{{p}}", f"{_OURS_BEIT}.mlp.fc1.{{p}}"),
    Rule(f"{_MEM}.mlp.fc2.{{p}}", f"{_OURS_BEIT}.mlp.fc2.{{p}}"),
    Rule(f"{_MEM}.lambda_1", f"{_OURS_BEIT}.layer_scale1"),
    Rule(f"{_MEM}.lambda_2", f"{_OURS_BEIT}.layer_scale2"),
]

_SWIN = "backbone.encoder.layers.{i}.blocks.{j}"
_SWIN_ATTN = f"{_SWIN}.attention.self"
_OURS_SWIN = "backbone.stages.{i}.blocks.{j}"
SWINV2 = [
    Rule("backbone.embeddings.patch_embeddings.projection.{p}", "backbone.patch_embed.proj.{p}"),
    Rule("backbone.embeddings.norm.{p}", "backbone.patch_embed.norm.{p}"),
    Rule(f"{_SWIN_ATTN}.query.weight", f"{_OURS_SWIN}.attn.qkv.weight", slot=0),
    Rule(f"{_SWIN_ATTN}.key.weight", f"{_OURS_SWIN}.attn.qkv.weight", slot=1),
    Rule(f"{_SWIN_ATTN}.value.weight", f"{_OURS_SWIN}.attn.qkv.weight", slot=2),
    Rule(f"{_SWIN_ATTN}.query.bias", f"{_OURS_SWIN}.attn.q_bias"),
    Rule(f"{_SWIN_ATTN}.value.bias", f"{_OURS_SWIN}.attn.v_bias"),
    Rule(f"{_SWIN_ATTN}.logit_scale", f"{_OURS_SWIN}.attn.logit_scale"),
    Rule(f"{_SWIN_ATTN}.continuous_position_bias_mlp.0.{{p}}", f"{_OURS_SWIN}.attn.cpb.fc1.{{p}}"),
    Rule(f"{_SWIN_ATTN}.continuous_position_bias_mlp.2.{{p}}", f"{_OURS_SWIN}.attn.cpb.fc2.{{p}}"),
    Rule(f"{_SWIN}.attention.output.dense.{{p}}", f"{_OURS_SWIN}.attn.proj.{{p}}"),
    Rule(f"{_SWIN}.layernorm_before.{{p}}", f"{_OURS_SWIN}.norm1.{{p}}"),
    Rule(f"{_SWIN}.layernorm_after.{{p}}", f"{_OURS_SWIN}.norm2.{{p}}"),
    Rule(f"{_SWIN}.intermediate.dense.{{p}}", f"{_OURS_SWIN}.mlp.fc1.{{p}}"),
    Rule(f"{_SWIN}.output.dense.{{p}}", f"{_OURS_SWIN}.mlp.fc2.{{p}}"),
    Rule("backbone.encoder.layers.{i}.downsample.reduction.weight", "backbone.stages.{i}.merge.reduction.weight"),
    Rule("backbone.encoder.layers.{i}.downsample.norm.{p}", "backbone.stages.{i}.merge.norm.{p}"),
]

_DINO = "backbone.encoder.layer.{n}"
_OURS_DINO = "backbone.blocks.{n}"
_DINO_COMMON = [
    Rule("backbone.embeddings.cls_token", "backbone.cls_token"),
    Rule("backbone.embeddings.mask_token", "backbone.mask_token"),
    Rule("backbone.embeddings.position_embeddings", "backbone.pos_embed"),
    Rule("backbone.embeddings.patch_embeddings.projection.{p}", "backbone.patch_embed.proj.{p}"),
    Rule(f"{_DINO}.norm1.{{p}}", f"{_OURS_DINO}.norm1.{{p}}"),
    Rule(f"{_DINO}.norm2.{{p}}", f"{_OURS_DINO}.norm2.{{p}}"),
    Rule(f"{_DINO}.layer_scale1.lambda1", f"{_OURS_DINO}.layer_scale1"),
    Rule(f"{_DINO}.layer_scale2.lambda1", f"{_OURS_DINO}.layer_scale2"),
    Rule(f"{_DINO}.mlp.fc1.{{p}}", f"{_OURS_DINO}.mlp.fc1.{{p}}"),
    Rule(f"{_DINO}.mlp.fc2.{{p}}", f"{_OURS_DINO}.mlp.fc2.{{p}}"),
    Rule("backbone.layernorm.{p}", "backbone.norm.{p}"),
]
_DINO_ATTENTION = [
    Rule(f"{_DINO}.attention.attention.query.{{p}}", f"{_OURS_DINO}.attn.qkv.{{p}}", slot=0),
    Rule(f"{_DINO}.attention.attention.key.{{p}}", f"{_OURS_DINO}.attn.qkv.{{p}}", slot=1),
    Rule(f"{_DINO}.attention.attention.value.{{p}}", f"{_OURS_DINO}.attn.qkv.{{p}}", slot=2),
    Rule(f"{_DINO}.attention.output.dense.{{p}}", f"{_OURS_DINO}.attn.proj.{{p}}"),
]
DINOV2 = _DINO_ATTENTION + _DINO_COMMON
# SwiGLU (giant): gate and up in one `weights_in`; first, so that saving writes these names
DINOV2_SWIGLU = _DINO_ATTENTION + [
    Rule(f"{_DINO}.mlp.weights_in.{{p}}", f"{_OURS_DINO}.mlp.fc1.{{p}}"),
    Rule(f"{_DINO}.mlp.weights_out.{{p}}", f"{_OURS_DINO}.mlp.fc2.{{p}}"),
] + _DINO_COMMON
DINOV2_IN_MEMORY = _DINO_COMMON + [
    Rule(f"{_DINO}.attention.q_proj.{{p}}", f"{_OURS_DINO}.attn.qkv.{{p}}", slot=0),
    Rule(f"{_DINO}.attention.k_proj.{{p}}", f"{_OURS_DINO}.attn.qkv.{{p}}", slot=1),
    Rule(f"{_DINO}.attention.v_proj.{{p}}", f"{_OURS_DINO}.attn.qkv.{{p}}", slot=2),
    Rule(f"{_DINO}.attention.o_proj.{{p}}", f"{_OURS_DINO}.attn.proj.{{p}}"),
    Rule(f"{_DINO}.mlp.gate_proj.{{p}}", f"{_OURS_DINO}.mlp.fc1.{{p}}", slot=0, parts=2),
    Rule(f"{_DINO}.mlp.up_proj.{{p}}", f"{_OURS_DINO}.mlp.fc1.{{p}}", slot=1, parts=2),
    Rule(f"{_DINO}.mlp.down_proj.{{p}}", f"{_OURS_DINO}.mlp.fc2.{{p}}"),
]
DEPTH_ANYTHING_HEAD = [Rule("head.conv{c}.{p}", "head.conv{c}.{p}")]

# Buffers some files carry that are recomputed, never read: position indices, coordinate tables.
SKIPPED = {
    "beit": (r"backbone\.(beit\.)?encoder\.layers?\.\d+\..*relative_position_index$",
             r"backbone\.beit\.layers\.\d+\..*relative_position_index$"),
    "swinv2": (r"backbone\.encoder\.layers\.\d+\.blocks\.\d+\.attention\.self\.(relative_coords_table|relative_position_index)$",),
}

_BACKBONES = {"vit": VIT, "hybrid": VIT, "beit": BEIT, "swinv2": SWINV2, "dinov2": DINOV2}
# a key that only transformers 5's in-memory names have, and their table
_IN_MEMORY = {"beit": ("backbone.beit.", BEIT_IN_MEMORY), "dinov2": (".attention.q_proj.", DINOV2_IN_MEMORY)}
_TABLES: dict[tuple[str, str], KeyTable] = {}

# Segmentation checkpoints are recognised by the BatchNorm in their head.
SEGMENTATION_MARKER = "head.head.1.running_mean"


def table_for(config: DPTConfig, keys: Iterable[str] = ()) -> KeyTable:
    """The table for `config`'s family, head and task; `keys` (a file's) picks transformers'
    in-memory names (BEiT, DINOv2) when the file uses them."""
    family = config.family
    backbone = _BACKBONES[family]
    if family in _IN_MEMORY and any(_IN_MEMORY[family][0] in k for k in keys):
        family, backbone = f"{family}-in-memory", _IN_MEMORY[family][1]
    elif family == "dinov2" and config.backbone_config.use_swiglu_ffn:
        family, backbone = "dinov2-swiglu", DINOV2_SWIGLU
    task = config.task or DEPTH
    head = "depth_anything" if config.is_depth_anything else task
    if (family, head) not in _TABLES:
        rules = {DEPTH: DEPTH_HEAD, "depth_anything": DEPTH_ANYTHING_HEAD}.get(head, SEGMENTATION_HEAD)
        _TABLES[family, head] = KeyTable("transformers", backbone + NECK + rules)
    return _TABLES[family, head]


def skipped(config: DPTConfig) -> tuple[str, ...]:
    """Patterns of keys a transformers file may hold that are dropped on purpose."""
    return SKIPPED.get(config.family, ())
