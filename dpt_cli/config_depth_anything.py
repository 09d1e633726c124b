"""Depth Anything's config.json (transformers' `DepthAnythingConfig`, `model_type` "depth_anything")
read into a `DPTConfig` and written back.

The architecture is a DPT: a DINOv2 backbone, the reassemble stages without readout (the class
token is dropped), the fusion stages resizing to each next stage's size, and its own head (see
`model.heads.DepthAnythingHead`). Unknown keys survive a round trip; each failure names its field.
"""

from __future__ import annotations

from typing import Any, Mapping

from .backbone_configs import DINOV2, dump
from .backbone_parse import parse_dinov2
from .config import DEPTH, ConfigError, DPTConfig
from .config_parse import _check_consistency, _get, _is_number, _size, _sizes, shown_value

ARCHITECTURE = "DepthAnythingForDepthEstimation"
KINDS = ("relative", "metric")


def parse_depth_anything(raw: Mapping[str, Any]) -> DPTConfig:
    """A `DPTConfig` (model_type "depth_anything") from a Depth Anything config.json's object."""
    archs = raw.get("architectures") or [ARCHITECTURE]
    if not isinstance(archs, list) or ARCHITECTURE not in archs:
        raise ConfigError(f"field 'architectures' is {shown_value(archs)}: expected [{ARCHITECTURE!r}]")
    backbone = raw.get("backbone_config")
    if raw.get("backbone") or not isinstance(backbone, Mapping) or backbone.get("model_type") != DINOV2:
        kind = backbone.get("model_type") if isinstance(backbone, Mapping) else raw.get("backbone")
        raise ConfigError(f"field 'backbone_config' names a {shown_value(kind)} backbone: Depth Anything runs on DINOv2 only")
    b = parse_dinov2(backbone)
    for name, want in (("reassemble_hidden_size", b.hidden_size), ("patch_size", b.patch_size)):
        if raw.get(name, want) != want:
            raise ConfigError(f"field '{name}' is {shown_value(raw[name])}, but the DINOv2 backbone's is {want}")
    kind = _get(raw, "depth_estimation_type", "relative", lambda v: v in KINDS, f"one of {KINDS}")
    max_depth = _get(raw, "max_depth", None, lambda v: _is_number(v) and v > 0, "a positive number")
    factors = tuple(_get(raw, "reassemble_factors", [4, 2, 1, 0.5], lambda v: isinstance(v, list) and all(_is_number(x) and x > 0 for x in v),
                         "a list of positive numbers"))
    config = DPTConfig(
        hidden_size=b.hidden_size,  # the DPT ViT fields: unused with a backbone
        num_hidden_layers=b.num_hidden_layers,
        num_attention_heads=b.num_attention_heads,
        intermediate_size=int(b.hidden_size * b.mlp_ratio),
        backbone_out_indices=b.out_indices,
        neck_hidden_sizes=_sizes(raw, "neck_hidden_sizes", [96, 192, 384, 768]),
        reassemble_factors=factors,
        task=DEPTH,
        readout_type="ignore",
        fusion_hidden_size=_size(raw, "fusion_hidden_size", 64),
        head_in_index=_get(raw, "head_in_index", -1, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        use_bias_in_fusion_residual=True,
        image_size=b.image_size,
        patch_size=b.patch_size,
        backbone_config=b,
        model_type="depth_anything",
        head_hidden_size=_size(raw, "head_hidden_size", 32),
        depth_estimation_type=kind,
        max_depth=float(max_depth) if max_depth is not None else (1.0 if kind == "metric" else None),
        extra=dict(raw),
    )
    _check_consistency(config)
    return config


def dump_depth_anything(c: DPTConfig) -> dict[str, Any]:
    """The config.json transformers' `DepthAnythingForDepthEstimation.from_pretrained` reads."""
    b = c.backbone_config
    out = {
        **c.extra,
        "model_type": "depth_anything",
        "architectures": [ARCHITECTURE],
        "backbone_config": dump(b),
        "reassemble_hidden_size": b.hidden_size,
        "patch_size": b.patch_size,
        "reassemble_factors": list(c.reassemble_factors),
        "neck_hidden_sizes": list(c.neck_hidden_sizes),
        "fusion_hidden_size": c.fusion_hidden_size,
        "head_in_index": c.head_in_index,
        "head_hidden_size": c.head_hidden_size,
        "depth_estimation_type": c.depth_estimation_type,
    }
    if c.max_depth is not None:  # transformers types it as an int (or absent: a null breaks its forward)
        out["max_depth"] = int(c.max_depth) if float(c.max_depth).is_integer() else c.max_depth
    elif out.get("max_depth", 0) is None:
        del out["max_depth"]
    return out
