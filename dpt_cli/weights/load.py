"""Build a DPT model from a transformers-layout folder, and write one back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

import torch

from ..backbone_configs import check_in_dpt
from ..config import DEPTH, SEGMENTATION, ConfigError, DPTConfig
from ..errors import DPTError
from ..model import DPT
from .files import SAFETENSORS, read_folder_weights, write_safetensors
from .hub import CONFIG, is_official, resolve, with_original_numerics
from .keymap import KeyTable
from .transformers_layout import SEGMENTATION_MARKER, skipped, table_for


class ShapeMismatch(DPTError, ValueError):
    pass


def build_empty(config: DPTConfig) -> DPT:
    """The model's structure on the meta device: no memory, no random initialisation."""
    with torch.device("meta"):
        return DPT(config)


# Config fields read off one dimension of one of our parameters: (parameter, dimension, field, what
# that dimension is). These size the model most, so a mismatch is named in one line before anything
# is built; every other shape is left to the strict check after building.
_FIELD_DIMS = (
    ("backbone.pos_embed", -1, "hidden_size", "position embeddings are {} wide"),
    ("backbone.cls_token", -1, "hidden_size", "class token is {} wide"),
    ("backbone.patch_embed.proj.weight", 0, "hidden_size", "patch projection has {} output channels"),
    ("backbone.patch_embed.proj.weight", 1, "num_channels", "patch projection has {} input channels"),
    ("backbone.patch_embed.proj.weight", 2, "patch_size", "patch projection has a {}-pixel kernel"),
    ("backbone.patch_embed.to_tokens.weight", 0, "hidden_size", "token projection has {} output channels"),
    ("backbone.blocks.0.mlp.fc1.weight", 0, "intermediate_size", "MLP is {} wide"),
)
_BEIT_DIMS = _FIELD_DIMS + (("backbone.blocks.0.attn.bias_table", 1, "num_attention_heads", "position bias has {} heads"),)
_SWIN_DIMS = (
    ("backbone.patch_embed.proj.weight", 0, "embed_dim", "patch projection has {} output channels"),
    ("backbone.patch_embed.proj.weight", 1, "num_channels", "patch projection has {} input channels"),
    ("backbone.patch_embed.proj.weight", 2, "patch_size", "patch projection has a {}-pixel kernel"),
)
# per family: the dimensions to compare (DINOv2's MLP width is mlp_ratio's and SwiGLU's business:
# the strict check after building)
_DIMS = {"vit": _FIELD_DIMS, "hybrid": _FIELD_DIMS, "beit": _BEIT_DIMS, "dinov2": _FIELD_DIMS[:5], "swinv2": _SWIN_DIMS}
_BLOCK = re.compile(r"backbone\.(?:stages\.(\d+)\.)?blocks\.(\d+)\.")


def check_config_fits(config: DPTConfig, state: Mapping[str, torch.Tensor], table: KeyTable) -> None:
    """Compare the config with the weights' keys and shapes, cheaply, before a model is built.

    Only names and `.shape` are read (free on memory-mapped tensors). A mismatch raises ConfigError
    naming the field and both numbers. Weights with no transformer blocks at all are not a DPT
    checkpoint of this layout: the strict key check lists what is wrong with them instead.
    """
    blocks: dict[int, set[int]] = {}
    ours: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        hit = table.map_foreign_key(key)
        if hit is None:
            continue  # unknown keys: reported by the strict check
        name, slot = hit
        block = _BLOCK.match(name)
        if block:
            blocks.setdefault(int(block.group(1) or 0), set()).add(int(block.group(2)))
        if slot is None:
            ours[name] = tensor
    if not blocks:
        return
    family, b = config.family, config.backbone_config
    fields, prefix = (config, "") if family in ("vit", "hybrid") else (b, "backbone_config.")
    if family == "swinv2":
        found = tuple(len(blocks.get(i, ())) for i in range(max(blocks) + 1))
        if found != b.depths:
            raise ConfigError(f"field '{prefix}depths' is {list(b.depths)}, but the weights' stages have {list(found)} blocks")
    elif len(blocks[0]) != fields.num_hidden_layers:
        raise ConfigError(
            f"field '{prefix}num_hidden_layers' is {fields.num_hidden_layers}, but the weights have {len(blocks[0])} transformer layers"
        )
    for param, dim, name, what in _DIMS[family]:
        size = _size_of(ours.get(param), dim)
        if size is not None and size != getattr(fields, name):
            raise ConfigError(f"field '{prefix}{name}' is {getattr(fields, name)}, but the weights' {what.format(size)}")
    if family == "beit":
        _check_bias_table(b, _size_of(ours.get("backbone.blocks.0.attn.bias_table"), 0))
    if family == "dinov2":
        _check_positions(b, _size_of(ours.get("backbone.pos_embed"), 1))


def _check_positions(b, rows: int | None) -> None:
    """DINOv2's position table has 1 + h*w rows for the trained (h, w) token grid."""
    h, w = b.grid
    if rows is not None and rows != 1 + h * w:
        raise ConfigError(
            f"field 'backbone_config.image_size' is {list(b.image_size)} ({h}x{w} patches), but the weights' "
            f"position table has {rows} rows, not 1 + {h * w}"
        )


def _check_bias_table(b, rows: int | None) -> None:
    """BEiT's relative position table has (2h-1)(2w-1) + 3 rows for the trained (h, w) token grid."""
    h, w = b.grid
    if rows is not None and rows != (2 * h - 1) * (2 * w - 1) + 3:
        raise ConfigError(
            f"field 'backbone_config.image_size' is {list(b.image_size)} ({h}x{w} patches), but the weights' "
            f"relative position table has {rows} rows, which is not (2h-1)(2w-1)+3 for that grid"
        )


def _size_of(tensor: torch.Tensor | None, dim: int) -> int | None:
    """`tensor.shape[dim]`; None when absent or with too few dimensions (the strict check says so)."""
    if tensor is None:
        return None
    try:
        return tensor.shape[dim]
    except IndexError:
        return None


def model_from_state(
    config: DPTConfig, state: Mapping[str, torch.Tensor], table: KeyTable | None = None, skip: tuple[str, ...] = ()
) -> DPT:
    """Assign a foreign state dict (transformers layout unless `table` says otherwise) to a fresh model.

    The config is first checked against the weights' keys and shapes (`check_config_fits`: one
    line naming the field). Then strict: every key must map (except those matching the `skip`
    patterns), every parameter must be filled, and every shape must agree with the config.
    """
    if config.task is None:
        config = config.replace(task=SEGMENTATION if SEGMENTATION_MARKER in state else DEPTH)
        if config.family in ("beit", "swinv2"):
            check_in_dpt(config.backbone_config, config.neck_hidden_sizes, config.task)
    if table is None:
        table, skip = table_for(config, state.keys()), skip + skipped(config)
    check_config_fits(config, state, table)
    model = build_empty(config)
    expected = model.state_dict()
    ours = table.to_ours(state, expected.keys(), skip)
    wrong = [f"{k} {tuple(v.shape)} (model wants {tuple(expected[k].shape)})" for k, v in ours.items() if v.shape != expected[k].shape]
    if wrong:
        raise ShapeMismatch(f"checkpoint does not fit its config: {len(wrong)} tensor(s) of the wrong shape: {', '.join(wrong[:4])}")
    model.load_state_dict(ours, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_model(
    spec: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu", official: bool | str | None = None
) -> DPT:
    """Load a model from a folder, alias or hub id (see `hub.resolve`), in eval mode.

    dtype: cast floating-point weights (None keeps the file's dtype).
    official: run with the original code's numerics (`hub.with_original_numerics`): True, or the
    official name `spec` was resolved from (a folder of the hub cache does not say); by default
    for aliases and the official hub ids.
    """
    folder = resolve(str(spec))
    config = DPTConfig.from_json_file(folder / CONFIG)
    if is_official(str(spec)) if official is None else bool(official):
        config = with_original_numerics(config, official if isinstance(official, str) else str(spec))
    try:
        model = model_from_state(config, read_folder_weights(folder))
    except ConfigError as exc:  # the config disagrees with the weights: name the file, as parsing does
        raise ConfigError(f"{folder / CONFIG}: {exc}") from None
    if dtype is not None or str(device) != "cpu":
        model = model.to(device=device, dtype=dtype)
    return model


def save_model(
    model: DPT, folder: str | Path, metadata: dict[str, str] | None = None, dtype: torch.dtype | None = None, progress=None
) -> None:
    """Write config.json and model.safetensors in the transformers layout.

    transformers' `DPTForDepthEstimation` / `DPTForSemanticSegmentation.from_pretrained(folder)`
    loads the result and computes the same outputs.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = table_for(model.config).to_foreign(model.state_dict())
    write_safetensors(list(state.items()), folder / SAFETENSORS, metadata, dtype, progress)
    config = model.config.to_dict()
    config["dtype"] = str(dtype or next(model.parameters()).dtype).removeprefix("torch.")
    (folder / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
