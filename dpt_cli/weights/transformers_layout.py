"""The transformers (Hugging Face) DPT key layout <-> ours: the one table for this format."""

from __future__ import annotations

from ..config import DEPTH
from .keymap import KeyTable, Rule

_BIT = "dpt.embeddings.backbone.bit"
_LAYER = "dpt.encoder.layer.{n}"
_FUSE = "neck.fusion_stage.layers.{rev}"

COMMON = [
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

DEPTH_TABLE = KeyTable("transformers", COMMON + DEPTH_HEAD)
SEGMENTATION_TABLE = KeyTable("transformers", COMMON + SEGMENTATION_HEAD)

# Segmentation checkpoints are recognised by the BatchNorm in their head.
SEGMENTATION_MARKER = "head.head.1.running_mean"


def table_for(task: str) -> KeyTable:
    return DEPTH_TABLE if task == DEPTH else SEGMENTATION_TABLE
