"""Build a DPT model from a transformers-layout folder, and write one back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from ..config import DEPTH, SEGMENTATION, DPTConfig
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


def model_from_state(
    config: DPTConfig, state: Mapping[str, torch.Tensor], table: KeyTable | None = None, skip: tuple[str, ...] = ()
) -> DPT:
    """Assign a foreign state dict (transformers layout unless `table` says otherwise) to a fresh model.

    Strict: every key must map (except those matching the `skip` patterns), every parameter must
    be filled, and every shape must agree with the config.
    """
    if config.task is None:
        config = config.replace(task=SEGMENTATION if SEGMENTATION_MARKER in state else DEPTH)
    model = build_empty(config)
    expected = model.state_dict()
    ours = (table or table_for(config.task)).to_ours(state, expected.keys(), skip)
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
    model = model_from_state(config, read_folder_weights(folder))
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
