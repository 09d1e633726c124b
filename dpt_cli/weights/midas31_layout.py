"""The original MiDaS v3.1 checkpoint layout (timm 0.6 BEiT / Swin-V2 + `scratch` decoder) <-> ours.

One table per backbone, the decoder's rules shared with the isl-org DPT layout, and the detection
of the architecture from keys and shapes. One thing the weights cannot tell: the window sizes a
Swin-V2 was pretrained with (they scale its position-bias coordinates), which come from the release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from ..config import DPTConfig
from ..errors import UsageError
from .isl_org_layout import DEPTH_HEAD, NECK, TAPS, NotADPTCheckpoint, neck_fields, shape_of
from .keymap import KeyTable, Rule

_M = "pretrained.model"
_B, _OB = f"{_M}.blocks.{{n}}", "backbone.blocks.{n}"
BEIT = [
    Rule(f"{_M}.cls_token", "backbone.cls_token"),
    Rule(f"{_M}.patch_embed.proj.{{p}}", "backbone.patch_embed.proj.{p}"),
    Rule(f"{_B}.gamma_1", f"{_OB}.layer_scale1"),
    Rule(f"{_B}.gamma_2", f"{_OB}.layer_scale2"),
    Rule(f"{_B}.attn.relative_position_bias_table", f"{_OB}.attn.bias_table"),
    *(Rule(f"{_B}.{name}", f"{_OB}.{name}") for name in ("attn.qkv.weight", "attn.q_bias", "attn.v_bias")),
    *(Rule(f"{_B}.{name}.{{p}}", f"{_OB}.{name}.{{p}}") for name in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2")),
]
_S, _OS = f"{_M}.layers.{{i}}.blocks.{{j}}", "backbone.stages.{i}.blocks.{j}"
SWINV2 = [
    Rule(f"{_M}.patch_embed.{{m}}.{{p}}", "backbone.patch_embed.{m}.{p}"),  # proj, norm
    Rule(f"{_S}.attn.cpb_mlp.0.{{p}}", f"{_OS}.attn.cpb.fc1.{{p}}"),
    Rule(f"{_S}.attn.cpb_mlp.2.weight", f"{_OS}.attn.cpb.fc2.weight"),
    *(Rule(f"{_S}.{name}", f"{_OS}.{name}") for name in ("attn.qkv.weight", "attn.q_bias", "attn.v_bias", "attn.logit_scale")),
    *(Rule(f"{_S}.{name}.{{p}}", f"{_OS}.{name}.{{p}}") for name in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2")),
    Rule(f"{_M}.layers.{{i}}.downsample.{{m}}.{{p}}", "backbone.stages.{i}.merge.{m}.{p}"),  # reduction, norm
]
TABLES = {"beit": KeyTable("MiDaS v3.1", BEIT + NECK + DEPTH_HEAD), "swinv2": KeyTable("MiDaS v3.1", SWINV2 + NECK + DEPTH_HEAD)}

# Dropped on purpose and reported: the ImageNet classifier and the norms only it uses, and stored
# buffers that are not weights (recomputed for every input size: never trusted).
SKIPPED = (
    rf"{_M}\.head\.", rf"{_M}\.fc_norm\.", rf"{_M}\.norm\.",
    r".*\.attn\.relative_position_index$", r".*\.blocks\.\d+\.attn_mask$",
)
BEIT_MARKER = f"{_M}.blocks.0.attn.relative_position_bias_table"
SWIN_MARKER = f"{_M}.layers.0.blocks.0.attn.cpb_mlp.0.weight"


@dataclass(frozen=True)
class Release:
    """One MiDaS v3.1 release: what the file name says that the weights do not."""

    name: str
    family: str
    size: int  # the square network input the original runs at (BEiT: aims at, keeping the aspect)
    width: int  # BEiT hidden size / Swin-V2 embed_dim: checked against the weights
    window: int = 0  # Swin-V2 attention window (checked against a stored mask's shape)
    pretrained_windows: tuple[int, ...] = (0, 0, 0, 0)


RELEASES = {
    r.name: r
    for r in (
        Release("beit_large_512", "beit", 512, 1024),
        Release("beit_large_384", "beit", 384, 1024),
        Release("beit_base_384", "beit", 384, 768),
        Release("swin2_large_384", "swinv2", 384, 192, 24, (12, 12, 12, 6)),
        Release("swin2_base_384", "swinv2", 384, 128, 24, (12, 12, 12, 6)),
        Release("swin2_tiny_256", "swinv2", 256, 96, 16),
    )
}


def family_of(state: Mapping[str, torch.Tensor]) -> str | None:
    """"beit" or "swinv2" for a MiDaS v3.1 file, None for anything else."""
    return "beit" if BEIT_MARKER in state else "swinv2" if SWIN_MARKER in state else None


def release_named(file_name: str) -> Release | None:
    name = file_name.lower().replace("-", "_")
    return next((r for r in RELEASES.values() if r.name in name), None)


def choose_release(family: str, file_name: str, requested: str) -> Release | None:
    """The release `--variant` names, else the one in the file name; None for a BEiT file named
    otherwise (everything about it is in its weights). A renamed Swin-V2 file needs --variant."""
    if requested != "auto":
        if requested not in RELEASES:
            raise UsageError(f"unknown variant {requested!r} for a MiDaS v3.1 file; releases: {', '.join(RELEASES)}")
        release = RELEASES[requested]
    else:
        release = release_named(file_name)
    if release is not None and release.family != family:
        raise UsageError(f"{file_name}: {release.name} is a {release.family} release, but the file holds a {family} model")
    if release is None and family == "swinv2":
        names = ", ".join(r.name for r in RELEASES.values() if r.family == "swinv2")
        raise UsageError(
            f"{file_name}: a Swin-V2 checkpoint whose pretrained window sizes the weights cannot tell, and the file "
            f"name is not a release name (dpt_swin2_large_384.pt, ...): pass --variant ({names})"
        )
    return release


def detect_config(state: Mapping[str, torch.Tensor], family: str, release: Release | None) -> DPTConfig:
    """The DPT config of a MiDaS v3.1 file, from its keys and shapes (and the release's windows)."""
    neck = neck_fields(state)
    backbone = _beit(state) if family == "beit" else _swin(state, release)
    width = backbone["hidden_size"] if family == "beit" else backbone["embed_dim"]
    if release is not None and release.width != width:
        raise UsageError(f"{release.name} is {release.width} wide, but the file's backbone is {width} wide: not that release (pass the right --variant)")
    if release is not None and release.size != backbone["image_size"]:
        raise UsageError(f"{release.name} was trained at {release.size}, but the file's position table is for {backbone['image_size']}: not that release")
    mask = state.get(f"{_M}.layers.0.blocks.1.attn_mask")  # its shape only: the values are recomputed
    if family == "swinv2" and mask is not None and mask.ndim == 3 and mask.shape[-1] != release.window**2:
        side = math.isqrt(mask.shape[-1])
        raise UsageError(f"{release.name} has {release.window}x{release.window} windows, but the file's are {side}x{side}: not that release")
    raw = {"architectures": ["DPTForDepthEstimation"], "model_type": "dpt", **neck, "backbone_config": backbone}
    if family == "swinv2":
        raw["reassemble_factors"] = [4, 2, 1, 0.5]  # unused: Swin-V2 stages are maps already
    return DPTConfig.from_dict(raw)


def _dims(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    """The shape of `key`, which must have `ndim` dimensions (else: not this layout)."""
    shape = shape_of(state, key)
    if len(shape) != ndim:
        raise NotADPTCheckpoint(f"not a MiDaS v3.1 layout: '{key}' has shape {list(shape)}")
    return shape


def _beit(state: Mapping[str, torch.Tensor]) -> dict:
    layers = sum(1 for k in state if k.startswith(f"{_M}.blocks.") and k.endswith(".norm1.weight"))
    if layers not in TAPS:
        raise NotADPTCheckpoint(f"not a MiDaS v3.1 BEiT layout: {layers} transformer blocks (expected 12 or 24)")
    rows, heads = _dims(state, BEIT_MARKER, 2)
    side = (math.isqrt(max(rows - 3, 0)) + 1) // 2  # the table has (2w-1)^2 + 3 rows for a w x w grid
    if (2 * side - 1) ** 2 + 3 != rows:
        raise NotADPTCheckpoint(f"not a MiDaS v3.1 BEiT layout: a relative position table of {rows} rows")
    hidden, _, patch, _ = _dims(state, f"{_M}.patch_embed.proj.weight", 4)
    return {
        "model_type": "beit", "image_size": side * patch, "patch_size": patch, "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": _dims(state, f"{_M}.blocks.0.mlp.fc1.weight", 2)[0],
        "use_relative_position_bias": True, "use_absolute_position_embeddings": False, "reshape_hidden_states": False,
        "layer_scale_init_value": 0.1 if f"{_M}.blocks.0.gamma_1" in state else 0.0, "use_mean_pooling": True,
        "out_features": [f"stage{i + 1}" for i in TAPS[layers]],
        "layer_norm_eps": 1e-6,  # timm's BEiT, which the weights were trained with
    }


def _swin(state: Mapping[str, torch.Tensor], release: Release) -> dict:
    embed, _, patch, _ = _dims(state, f"{_M}.patch_embed.proj.weight", 4)
    depths = [sum(1 for k in state if k.startswith(f"{_M}.layers.{i}.blocks.") and k.endswith(".norm1.weight")) for i in range(4)]
    if 0 in depths or any(k.startswith(f"{_M}.layers.4.") for k in state):
        raise NotADPTCheckpoint(f"not a MiDaS v3.1 Swin-V2 layout: stages with {depths} blocks")
    heads = [_dims(state, f"{_M}.layers.{i}.blocks.0.attn.cpb_mlp.2.weight", 2)[0] for i in range(4)]
    window = release.window
    mlp = _dims(state, f"{_M}.layers.0.blocks.0.mlp.fc1.weight", 2)[0]
    return {
        "model_type": "swinv2", "image_size": release.size, "patch_size": patch, "embed_dim": embed, "depths": depths,
        "num_heads": heads, "window_size": window, "pretrained_window_sizes": list(release.pretrained_windows),
        "out_features": ["stage1", "stage2", "stage3", "stage4"], "layer_norm_eps": 1e-5, "mlp_ratio": mlp / embed, "qkv_bias": True,
    }
