"""Build a DPT model from a transformers-layout folder, and write one back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

import torch

from ..config import DEPTH, SEGMENTATION, ConfigError, DPTConfig
from ..errors import DPTError
from ..model import DPT
from .files import SAFETENSORS, read_folder_weights, write_safetensors
from .hub import CONFIG, resolve
from .keymap import KeyTable
from .transformers_layout import SEGMENTATION_MARKER, table_for


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
_BLOCK = re.compile(r"backbone\.blocks\.(\d+)\.")


def check_config_fits(config: DPTConfig, state: Mapping[str, torch.Tensor], table: KeyTable) -> None:
    """Compare the config with the weights' keys and shapes, cheaply, before a model is built.

    Only names and `.shape` are read (free on memory-mapped tensors). A mismatch raises ConfigError
    naming the field and both numbers. Weights with no transformer blocks at all are not a DPT
    checkpoint of this layout: the strict key check lists what is wrong with them instead.
    """
    blocks: set[int] = set()
    ours: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        hit = table.map_foreign_key(key)
        if hit is None:
            continue  # unknown keys: reported by the strict check
        name, slot = hit
        block = _BLOCK.match(name)
        if block:
            blocks.add(int(block.group(1)))
        if slot is None:
            ours[name] = tensor
    if not blocks:
        return
    if len(blocks) != config.num_hidden_layers:
        raise ConfigError(
            f"field 'num_hidden_layers' is {config.num_hidden_layers}, but the weights have {len(blocks)} transformer layers"
        )
    for param, dim, name, what in _FIELD_DIMS:
        size = _size_of(ours.get(param), dim)
        if size is not None and size != getattr(config, name):
            raise ConfigError(f"field '{name}' is {getattr(config, name)}, but the weights' {what.format(size)}")


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
    table = table or table_for(config.task)
    check_config_fits(config, state, table)
    model = build_empty(config)
    expected = model.state_dict()
    ours = table.to_ours(state, expected.keys(), skip)
    wrong = [f"{k} {tuple(v.shape)} (model wants {tuple(expected[k].shape)})" for k, v in ours.items() if v.shape != expected[k].shape]
    if wrong:
        raise ShapeMismatch(f"checkpoint does not fit its config: {len(wrong)} tensor(s) of the wrong shape: {', '.join(wrong[:4])}")
    model.load_state_dict(ours, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_model(spec: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> DPT:
    """Load a model from a folder, alias or hub id (see `hub.resolve`), in eval mode.

    dtype: cast floating-point weights (None keeps the file's dtype).
    """
    folder = resolve(str(spec))
    config = DPTConfig.from_json_file(folder / CONFIG)
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
    state = table_for(model.config.task).to_foreign(model.state_dict())
    write_safetensors(list(state.items()), folder / SAFETENSORS, metadata, dtype, progress)
    config = model.config.to_dict()
    config["dtype"] = str(dtype or next(model.parameters()).dtype).removeprefix("torch.")
    (folder / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
