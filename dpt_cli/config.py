"""Model configuration: frozen dataclasses read from and written to a transformers `config.json`.

Only the fields that change what inference computes are typed here. Every other key of the
source file is kept verbatim in `extra` so that a load/save round trip loses nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import DPTError

DEPTH = "depth"
SEGMENTATION = "segmentation"
ARCHITECTURES = {DEPTH: "DPTForDepthEstimation", SEGMENTATION: "DPTForSemanticSegmentation"}
SUPPORTED_ACTIVATIONS = ("gelu", "relu")


class ConfigError(DPTError, ValueError):
    """A config.json that dpt cannot run; the message names the offending field."""


@dataclass(frozen=True)
class BitConfig:
    """The BiT ResNet that feeds the hybrid ViT (transformers `BitConfig`, bottleneck layers)."""

    depths: tuple[int, ...] = (3, 4, 9)
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    embedding_size: int = 64
    num_groups: int = 32
    global_padding: str | None = "SAME"
    layer_type: str = "bottleneck"
    embedding_dynamic_padding: bool = True
    out_features: tuple[str, ...] = ("stage1", "stage2", "stage3")
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """Output channels of each stage that is built (one per entry of `depths`)."""
        return self.hidden_sizes[: len(self.depths)]


@dataclass(frozen=True)
class DPTConfig:
    """Everything that defines a DPT network; field names follow transformers' `DPTConfig`.

    `depth_scale`, `depth_shift` and `invert_depth` are ours: metric models (KITTI, NYU) turn the
    head's output x into metres as `1 / max(depth_scale * x + depth_shift, 1e-8)`.
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    backbone_out_indices: tuple[int, ...]
    neck_hidden_sizes: tuple[int, ...]
    reassemble_factors: tuple[float, ...]
    task: str | None = DEPTH
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: int | tuple[int, int] = 384
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    readout_type: str = "project"
    fusion_hidden_size: int = 256
    head_in_index: int = -1
    use_batch_norm_in_fusion_residual: bool = False
    use_bias_in_fusion_residual: bool | None = None
    add_projection: bool = False
    use_auxiliary_head: bool = True
    id2label: Mapping[int, str] = field(default_factory=dict)
    is_hybrid: bool = False
    backbone_config: BitConfig | None = None
    backbone_featmap_shape: tuple[int, ...] | None = None
    neck_ignore_stages: tuple[int, ...] = ()
    depth_scale: float | None = None
    depth_shift: float | None = None
    invert_depth: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def fusion_bias(self) -> bool:
        """Whether the fusion residual convs have a bias (transformers: none when BatchNorm is used)."""
        if self.use_bias_in_fusion_residual is not None:
            return self.use_bias_in_fusion_residual
        return not self.use_batch_norm_in_fusion_residual

    @property
    def is_metric(self) -> bool:
        return self.depth_scale is not None or self.invert_depth

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "DPTConfig":
        return _parse_dpt(raw)

    def to_dict(self) -> dict[str, Any]:
        return _dump_dpt(self)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "DPTConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def replace(self, **changes: Any) -> "DPTConfig":
        return replace(self, **changes)


# --- parsing ---------------------------------------------------------------------------------

_REQUIRED = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "backbone_out_indices",
    "neck_hidden_sizes",
    "reassemble_factors",
)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _get(raw: Mapping[str, Any], name: str, default: Any, check, expected: str, prefix: str = "") -> Any:
    value = raw.get(name, default)
    if value is None and default is None:
        return None
    if not check(value):
        raise ConfigError(f"field '{prefix}{name}' must be {expected}, got {value!r}")
    return value


def _int_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(_is_int(x) for x in v)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _parse_bit(raw: Any) -> BitConfig:
    p = "backbone_config."
    if not isinstance(raw, Mapping):
        raise ConfigError("field 'backbone_config' must be an object describing a BiT ResNet")
    if raw.get("model_type", "bit") != "bit":
        raise ConfigError(f"field 'backbone_config.model_type' is {raw['model_type']!r}: only 'bit' hybrids are supported")
    layer_type = _get(raw, "layer_type", "preactivation", lambda v: isinstance(v, str), "a string", p)
    if layer_type != "bottleneck":
        raise ConfigError(f"field 'backbone_config.layer_type' is {layer_type!r}: only 'bottleneck' is supported")
    padding = _get(raw, "global_padding", None, lambda v: isinstance(v, str), "a string", p)
    if padding is None or padding.upper() != "SAME":
        raise ConfigError(f"field 'backbone_config.global_padding' is {padding!r}: only 'SAME' is supported")
    depths = tuple(_get(raw, "depths", None, _int_list, "a list of integers", p) or ())
    if len(depths) != 3:
        raise ConfigError(f"field 'backbone_config.depths' must list 3 stages, got {list(depths)}")
    hidden_sizes = tuple(_get(raw, "hidden_sizes", [256, 512, 1024, 2048], _int_list, "a list of integers", p))
    if len(hidden_sizes) < len(depths):
        raise ConfigError("field 'backbone_config.hidden_sizes' must have an entry per stage")
    out_features = tuple(raw.get("out_features") or ("stage1", "stage2", "stage3"))
    if out_features != ("stage1", "stage2", "stage3"):
        raise ConfigError(f"field 'backbone_config.out_features' must be stage1..stage3, got {list(out_features)}")
    for name, expect in (("width_factor", 1), ("num_channels", 3)):
        if raw.get(name, expect) != expect:
            raise ConfigError(f"field 'backbone_config.{name}' must be {expect}, got {raw[name]!r}")
    if raw.get("output_stride", 32) < 16:
        raise ConfigError("field 'backbone_config.output_stride' below 16 (dilated stages) is not supported")
    hidden_act = raw.get("hidden_act", "relu")
    if hidden_act != "relu":
        raise ConfigError(f"field 'backbone_config.hidden_act' is {hidden_act!r}: only 'relu' is supported")
    return BitConfig(
        depths=depths,
        hidden_sizes=hidden_sizes,
        embedding_size=_get(raw, "embedding_size", 64, _positive_int, "a positive integer", p),
        num_groups=_get(raw, "num_groups", 32, _positive_int, "a positive integer", p),
        global_padding=padding,
        layer_type=layer_type,
        embedding_dynamic_padding=_get(raw, "embedding_dynamic_padding", False, lambda v: isinstance(v, bool), "true or false", p),
        out_features=out_features,
        extra=dict(raw),
    )


def _task_from(raw: Mapping[str, Any]) -> str:
    archs = raw.get("architectures") or []
    if not isinstance(archs, list):
        raise ConfigError(f"field 'architectures' must be a list, got {archs!r}")
    for task, name in ARCHITECTURES.items():
        if name in archs:
            return task
    if archs:
        raise ConfigError(f"field 'architectures' is {archs}: expected one of {sorted(ARCHITECTURES.values())}")
    return None  # decided by the weights' keys (see dpt_cli.weights)


def _parse_dpt(raw: Mapping[str, Any]) -> DPTConfig:
    model_type = raw.get("model_type", "dpt")
    if model_type != "dpt":
        raise ConfigError(f"field 'model_type' is {model_type!r}, not 'dpt'")
    if raw.get("backbone") or (raw.get("backbone_config") and not raw.get("is_hybrid")):
        kind = (raw.get("backbone_config") or {}).get("model_type", raw.get("backbone"))
        raise ConfigError(f"field 'backbone_config' names a {kind!r} backbone: only ViT and ViT-hybrid (BiT) are supported")
    for name in _REQUIRED:
        if name not in raw:
            raise ConfigError(f"field '{name}' is missing")
    boolean = (lambda v: isinstance(v, bool), "true or false")
    pos_int = (_positive_int, "a positive integer")
    number = (_is_number, "a number")
    ints = (_int_list, "a list of integers")
    cfg: dict[str, Any] = {}
    for name, (check, expected) in {
        "hidden_size": pos_int,
        "num_hidden_layers": pos_int,
        "num_attention_heads": pos_int,
        "intermediate_size": pos_int,
        "patch_size": pos_int,
        "num_channels": pos_int,
        "fusion_hidden_size": pos_int,
        "head_in_index": (_is_int, "an integer"),
        "layer_norm_eps": number,
        "qkv_bias": boolean,
        "is_hybrid": boolean,
        "add_projection": boolean,
        "use_auxiliary_head": boolean,
        "use_batch_norm_in_fusion_residual": boolean,
        "invert_depth": boolean,
    }.items():
        default = DPTConfig.__dataclass_fields__[name].default
        cfg[name] = _get(raw, name, default, check, expected)
    cfg["use_bias_in_fusion_residual"] = _get(raw, "use_bias_in_fusion_residual", None, *boolean)
    cfg["depth_scale"] = _get(raw, "depth_scale", None, *number)
    cfg["depth_shift"] = _get(raw, "depth_shift", None, *number)
    for name in ("backbone_out_indices", "neck_hidden_sizes"):
        cfg[name] = tuple(_get(raw, name, None, *ints))
    cfg["reassemble_factors"] = tuple(
        _get(raw, "reassemble_factors", None, lambda v: isinstance(v, list) and all(_is_number(x) and x > 0 for x in v), "a list of positive numbers")
    )
    cfg["image_size"] = _get(raw, "image_size", 384, lambda v: _positive_int(v) or (_int_list(v) and len(v) == 2), "an integer or [height, width]")
    if isinstance(cfg["image_size"], list):
        cfg["image_size"] = tuple(cfg["image_size"])
    cfg["hidden_act"] = _get(raw, "hidden_act", "gelu", lambda v: v in SUPPORTED_ACTIVATIONS, f"one of {SUPPORTED_ACTIVATIONS}")
    cfg["readout_type"] = _get(raw, "readout_type", "project", lambda v: v in ("ignore", "add", "project"), "'ignore', 'add' or 'project'")
    cfg["task"] = _task_from(raw)
    cfg["id2label"] = _parse_labels(raw.get("id2label"))
    if cfg["is_hybrid"]:
        cfg["backbone_config"] = _parse_bit(raw.get("backbone_config") or {})
        cfg["backbone_featmap_shape"] = tuple(_get(raw, "backbone_featmap_shape", [1, 1024, 24, 24], ints[0], ints[1]))
        cfg["neck_ignore_stages"] = tuple(_get(raw, "neck_ignore_stages", [0, 1], *ints))
        if cfg["readout_type"] != "project":
            raise ConfigError("field 'readout_type' must be 'project' for a hybrid model")
    cfg["extra"] = dict(raw)
    config = DPTConfig(**cfg)
    _check_consistency(config)
    return config


def _parse_labels(raw: Any) -> dict[int, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("field 'id2label' must map class ids to names")
    try:
        labels = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ConfigError("field 'id2label' keys must be integer class ids") from None
    if sorted(labels) != list(range(len(labels))):
        raise ConfigError("field 'id2label' must number classes 0..N-1 without gaps")
    return labels


def _check_consistency(c: DPTConfig) -> None:
    if c.hidden_size % c.num_attention_heads:
        raise ConfigError(f"field 'num_attention_heads' ({c.num_attention_heads}) must divide hidden_size ({c.hidden_size})")
    n = len(c.neck_hidden_sizes)
    if n != 4 or len(c.reassemble_factors) != 4 or len(c.backbone_out_indices) != 4:
        raise ConfigError("fields 'neck_hidden_sizes', 'reassemble_factors' and 'backbone_out_indices' must have 4 entries")
    if any(not 0 <= i < c.num_hidden_layers for i in c.backbone_out_indices[len(c.neck_ignore_stages):]):
        raise ConfigError(f"field 'backbone_out_indices' {list(c.backbone_out_indices)} is outside 0..{c.num_hidden_layers - 1}")
    for f in c.reassemble_factors:
        if f < 1 and not float(1 / f).is_integer() or f > 1 and not float(f).is_integer():
            raise ConfigError(f"field 'reassemble_factors' entry {f} is neither an integer nor 1/integer")
    if not -n <= c.head_in_index < n:
        raise ConfigError(f"field 'head_in_index' ({c.head_in_index}) must index one of {n} fused features")
    if c.add_projection and c.fusion_hidden_size != 256:
        raise ConfigError("field 'add_projection' needs fusion_hidden_size 256 (the projection is 256->256)")
    if c.task == SEGMENTATION and c.num_labels < 1:
        raise ConfigError("field 'id2label' must name the classes of a segmentation model")
    if c.is_hybrid and tuple(c.neck_ignore_stages) != (0, 1):
        raise ConfigError(f"field 'neck_ignore_stages' must be [0, 1] for a hybrid, got {list(c.neck_ignore_stages)}")


# --- writing ---------------------------------------------------------------------------------

_OURS = ("task", "id2label", "backbone_config", "extra")
_OURS_ONLY = ("depth_scale", "depth_shift", "invert_depth")


def _dump_dpt(c: DPTConfig) -> dict[str, Any]:
    out = dict(c.extra)
    for f in fields(c):
        if f.name in _OURS:
            continue
        value = getattr(c, f.name)
        if f.name in _OURS_ONLY and value == f.default and f.name not in c.extra:
            continue  # keep configs of relative models identical to transformers' own
        out[f.name] = list(value) if isinstance(value, tuple) else value
    out["model_type"] = "dpt"
    if c.task is not None:
        out["architectures"] = [ARCHITECTURES[c.task]]
    if c.id2label:
        out["id2label"] = {str(k): v for k, v in sorted(c.id2label.items())}
        out["label2id"] = {v: k for k, v in sorted(c.id2label.items())}
    if c.backbone_config is not None:
        b = c.backbone_config
        out["backbone_config"] = {
            **b.extra,
            "model_type": "bit",
            "depths": list(b.depths),
            "hidden_sizes": list(b.hidden_sizes),
            "embedding_size": b.embedding_size,
            "num_groups": b.num_groups,
            "global_padding": b.global_padding,
            "layer_type": b.layer_type,
            "embedding_dynamic_padding": b.embedding_dynamic_padding,
            "out_features": list(b.out_features),
        }
    return out
