"""Parsing a config.json's object into a `DPTConfig`: types, bounds, consistency; each failure one line.

The dataclasses, the bounds table (`CONFIG_LIMITS`) and the writing half live in `dpt_cli.config`,
whose `DPTConfig.from_dict` calls in here. Everything is checked before a model is built: a config
that would loop for minutes, overflow, or recurse without end is refused here, naming the field.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any, Callable, Mapping

from .config import ARCHITECTURES, CONFIG_LIMITS, MAX_NESTING, SEGMENTATION, SUPPORTED_ACTIVATIONS
from .config import BitConfig, ConfigError, DPTConfig

_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "backbone_out_indices", "neck_hidden_sizes", "reassemble_factors")

# Positive integers that size the model, each bounded by its CONFIG_LIMITS entry, and true/false flags.
_SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size", "num_channels", "fusion_hidden_size")
_FLAG_FIELDS = ("qkv_bias", "is_hybrid", "add_projection", "use_auxiliary_head", "use_batch_norm_in_fusion_residual", "invert_depth")

# Messages quote the offending value; a 10 MB list or a 500-deep nest must still be one short line.
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60


def shown_value(value: Any) -> str:
    """A short one-line repr of any config value, for error messages."""
    try:
        return _SHOW.repr(value)
    except ValueError:  # an int past Python's 4300-digit str() limit
        return "<an integer too long to print>"


# --- value checks ----------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A finite int or float (NaN, Infinity and ints too big for a float are not)."""
    if not (_is_int(v) or isinstance(v, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _int_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(_is_int(x) for x in v)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _get(
    raw: Mapping[str, Any], name: str, default: Any, check: Callable[[Any], bool], expected: str, prefix: str = ""
) -> Any:
    value = raw.get(name, default)
    if value is None and default is None:
        return None
    if not check(value):
        raise ConfigError(f"field '{prefix}{name}' must be {expected}, got {shown_value(value)}")
    return value


def _size(raw: Mapping[str, Any], name: str, default: Any, prefix: str = "") -> int:
    """A positive integer field that sizes the model, within its CONFIG_LIMITS entry."""
    value = _get(raw, name, default, _positive_int, "a positive integer", prefix)
    limit = CONFIG_LIMITS[prefix + name]
    if value > limit:
        raise ConfigError(f"field '{prefix}{name}' must be at most {limit}, got {shown_value(value)}")
    return value


def _entries_within(
    name: str, values: tuple, low: float, high: float, low_text: str | None = None, each: bool = True
) -> tuple:
    """`values` unchanged, or a ConfigError naming the first entry outside low..high."""
    for v in values:
        if not low <= v <= high:
            what = "entries must" if each else "must"
            raise ConfigError(f"field '{name}' {what} be between {low_text or low} and {high}, got {shown_value(v)}")
    return values


def _sizes(raw: Mapping[str, Any], name: str, default: Any, low: int = 1, prefix: str = "") -> tuple[int, ...]:
    """A list of integers, each within low..CONFIG_LIMITS[name]."""
    values = tuple(_get(raw, name, default, _int_list, "a list of integers", prefix))
    return _entries_within(prefix + name, values, low, CONFIG_LIMITS[prefix + name])


def _check_nesting(raw: Mapping[str, Any]) -> None:
    """Refuse values nested deeper than MAX_NESTING, naming the top-level field that holds them.

    Iterative on purpose: printing, copying or writing the config back would recurse once per level.
    """
    for name, value in raw.items():
        stack = [(value, 1)]
        while stack:
            v, depth = stack.pop()
            children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
            if children is None:
                continue
            if depth > MAX_NESTING:
                raise ConfigError(f"field '{name}' is nested more than {MAX_NESTING} levels deep")
            stack.extend((c, depth + 1) for c in children)


# --- the BiT backbone ------------------------------------------------------------------------


def _parse_bit(raw: Any) -> BitConfig:
    p = "backbone_config."
    if not isinstance(raw, Mapping):
        raise ConfigError("field 'backbone_config' must be an object describing a BiT ResNet")
    if raw.get("model_type", "bit") != "bit":
        raise ConfigError(f"field 'backbone_config.model_type' is {shown_value(raw['model_type'])}: only 'bit' hybrids are supported")
    layer_type = _get(raw, "layer_type", "preactivation", lambda v: isinstance(v, str), "a string", p)
    if layer_type != "bottleneck":
        raise ConfigError(f"field 'backbone_config.layer_type' is {shown_value(layer_type)}: only 'bottleneck' is supported")
    padding = _get(raw, "global_padding", None, lambda v: isinstance(v, str), "a string", p)
    if padding is None or padding.upper() != "SAME":
        raise ConfigError(f"field 'backbone_config.global_padding' is {shown_value(padding)}: only 'SAME' is supported")
    depths = _sizes(raw, "depths", [], prefix=p)
    if len(depths) != 3:
        raise ConfigError(f"field 'backbone_config.depths' must list 3 stages, got {shown_value(list(depths))}")
    hidden_sizes = _sizes(raw, "hidden_sizes", [256, 512, 1024, 2048], prefix=p)
    if len(hidden_sizes) < len(depths):
        raise ConfigError("field 'backbone_config.hidden_sizes' must have an entry per stage")
    out_features = _get(raw, "out_features", None, lambda v: isinstance(v, (list, tuple)), "a list", p)
    out_features = tuple(out_features or ("stage1", "stage2", "stage3"))
    if out_features != ("stage1", "stage2", "stage3"):
        raise ConfigError(f"field 'backbone_config.out_features' must be stage1..stage3, got {shown_value(list(out_features))}")
    for name, expect in (("width_factor", 1), ("num_channels", 3)):
        if raw.get(name, expect) != expect:
            raise ConfigError(f"field 'backbone_config.{name}' must be {expect}, got {shown_value(raw[name])}")
    if _get(raw, "output_stride", 32, _is_int, "an integer", p) < 16:
        raise ConfigError("field 'backbone_config.output_stride' below 16 (dilated stages) is not supported")
    hidden_act = raw.get("hidden_act", "relu")
    if hidden_act != "relu":
        raise ConfigError(f"field 'backbone_config.hidden_act' is {shown_value(hidden_act)}: only 'relu' is supported")
    bit = BitConfig(
        depths=depths,
        hidden_sizes=hidden_sizes,
        embedding_size=_size(raw, "embedding_size", 64, p),
        num_groups=_size(raw, "num_groups", 32, p),
        global_padding=padding,
        layer_type=layer_type,
        embedding_dynamic_padding=_get(raw, "embedding_dynamic_padding", False, _is_bool, "true or false", p),
        out_features=out_features,
        extra=dict(raw),
    )
    _check_groups(bit)
    return bit


def _check_groups(bit: BitConfig) -> None:
    """GroupNorm needs num_groups to divide every normalised width; say so before torch does."""
    from .model.bit import make_div  # the ResNet's own channel rounding (imports torch: hybrids only)

    widths = [bit.embedding_size]
    for width in bit.stage_widths:
        widths += [make_div(width * 0.25), width]  # a bottleneck's inner and output widths
    bad = [w for w in widths if w % bit.num_groups]
    if bad:
        raise ConfigError(
            f"field 'backbone_config.num_groups' ({bit.num_groups}) must divide every ResNet width; it does not divide {bad[0]}"
        )


# --- the DPT config --------------------------------------------------------------------------


def _task_from(raw: Mapping[str, Any]) -> str | None:
    archs = raw.get("architectures") or []
    if not isinstance(archs, list):
        raise ConfigError(f"field 'architectures' must be a list, got {shown_value(archs)}")
    for task, name in ARCHITECTURES.items():
        if name in archs:
            return task
    if archs:
        raise ConfigError(f"field 'architectures' is {shown_value(archs)}: expected one of {sorted(ARCHITECTURES.values())}")
    return None  # decided by the weights' keys (see dpt_cli.weights)


def _check_kind(raw: Mapping[str, Any]) -> str | None:
    """The backbone_config's model_type when it is a BEiT or Swin-V2 (None: ViT or ViT-hybrid), and
    every required field present."""
    from .backbone_parse import PARSERS

    model_type = raw.get("model_type", "dpt")
    if model_type != "dpt":
        raise ConfigError(f"field 'model_type' is {shown_value(model_type)}, not 'dpt' or 'depth_anything'")
    backbone = raw.get("backbone_config")
    kind = backbone.get("model_type") if isinstance(backbone, Mapping) else raw.get("backbone")
    family = kind if isinstance(kind, str) and kind in PARSERS and not raw.get("is_hybrid") else None
    if raw.get("backbone") or (backbone and not raw.get("is_hybrid") and family is None):
        raise ConfigError(
            f"field 'backbone_config' names a {shown_value(kind)} backbone: only ViT, ViT-hybrid (BiT), BEiT and Swin-V2 are supported"
        )
    for name in _REQUIRED if family is None else ("neck_hidden_sizes",):
        if name not in raw:
            raise ConfigError(f"field '{name}' is missing")
    return family


def _parse_scalars(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The single-valued fields: sizes within CONFIG_LIMITS, flags, numbers and names."""
    cfg: dict[str, Any] = {}
    default = {name: f.default for name, f in DPTConfig.__dataclass_fields__.items()}
    for name in _SIZE_FIELDS:
        cfg[name] = _size(raw, name, default[name])
    cfg["head_in_index"] = _get(raw, "head_in_index", default["head_in_index"], _is_int, "an integer")
    cfg["layer_norm_eps"] = _get(raw, "layer_norm_eps", default["layer_norm_eps"], _is_number, "a finite number")
    for name in _FLAG_FIELDS:
        cfg[name] = _get(raw, name, default[name], _is_bool, "true or false")
    cfg["use_bias_in_fusion_residual"] = _get(raw, "use_bias_in_fusion_residual", None, _is_bool, "true or false")
    cfg["depth_scale"] = _get(raw, "depth_scale", None, _is_number, "a finite number")
    cfg["depth_shift"] = _get(raw, "depth_shift", None, _is_number, "a finite number")
    cfg["max_depth"] = _get(raw, "max_depth", None, lambda v: _is_number(v) and v > 0, "a positive number")
    cfg["hidden_act"] = _get(raw, "hidden_act", "gelu", lambda v: v in SUPPORTED_ACTIVATIONS, f"one of {SUPPORTED_ACTIVATIONS}")
    cfg["readout_type"] = _get(raw, "readout_type", "project", lambda v: v in ("ignore", "add", "project"), "'ignore', 'add' or 'project'")
    return cfg


def _parse_lists(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The list-valued fields, every entry within its CONFIG_LIMITS entry."""
    cfg: dict[str, Any] = {
        "backbone_out_indices": _sizes(raw, "backbone_out_indices", None, low=0),
        "neck_hidden_sizes": _sizes(raw, "neck_hidden_sizes", None),
    }
    positives = lambda v: isinstance(v, list) and all(_is_number(x) and x > 0 for x in v)  # noqa: E731
    factors = tuple(_get(raw, "reassemble_factors", None, positives, "a list of positive numbers"))
    top = CONFIG_LIMITS["reassemble_factors"]
    cfg["reassemble_factors"] = _entries_within("reassemble_factors", factors, 1 / top, top, f"1/{top}")
    side_or_pair = lambda v: _positive_int(v) or (_int_list(v) and len(v) == 2)  # noqa: E731
    size = _get(raw, "image_size", 384, side_or_pair, "an integer or [height, width]")
    pair = isinstance(size, (list, tuple))
    sides = _entries_within("image_size", tuple(size) if pair else (size,), 1, CONFIG_LIMITS["image_size"], each=pair)
    cfg["image_size"] = sides if pair else size
    return cfg


def _parse_hybrid(raw: Mapping[str, Any], readout_type: str) -> dict[str, Any]:
    """The fields only a ViT-hybrid has."""
    if readout_type != "project":
        raise ConfigError("field 'readout_type' must be 'project' for a hybrid model")
    return {
        "backbone_config": _parse_bit(raw.get("backbone_config") or {}),
        "backbone_featmap_shape": _sizes(raw, "backbone_featmap_shape", [1, 1024, 24, 24]),
        "neck_ignore_stages": tuple(_get(raw, "neck_ignore_stages", [0, 1], _int_list, "a list of integers")),
    }


def parse_dpt(raw: Mapping[str, Any]) -> DPTConfig:
    """A `DPTConfig` from a config.json's object; any problem raises ConfigError naming the field."""
    from .backbone_configs import UNUSED_VIT_FIELDS, check_in_dpt
    from .backbone_parse import PARSERS

    _check_nesting(raw)
    if raw.get("model_type") == "depth_anything":
        from .config_depth_anything import parse_depth_anything

        return parse_depth_anything(raw)
    family = _check_kind(raw)
    extra = dict(raw)
    if family is not None:
        raw = {**UNUSED_VIT_FIELDS, **raw}
    cfg = _parse_scalars(raw)
    cfg.update(_parse_lists(raw))
    cfg["task"] = _task_from(raw)
    cfg["id2label"] = _parse_labels(raw.get("id2label"))
    if cfg["is_hybrid"]:
        cfg.update(_parse_hybrid(raw, cfg["readout_type"]))
    elif family is not None:
        cfg["backbone_config"] = PARSERS[family](raw["backbone_config"])
        check_in_dpt(cfg["backbone_config"], cfg["neck_hidden_sizes"], cfg["task"])
    cfg["extra"] = extra
    config = DPTConfig(**cfg)
    _check_consistency(config)
    return config


def _parse_labels(raw: Any) -> dict[int, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("field 'id2label' must map class ids to names")
    limit = CONFIG_LIMITS["id2label"]
    if len(raw) > limit:
        raise ConfigError(
            f"field 'id2label' has {len(raw)} classes, at most {limit}: "
            "class ids must fit the 16-bit label PNG that dpt segment writes"
        )
    try:
        labels = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ConfigError("field 'id2label' keys must be integer class ids") from None
    if sorted(labels) != list(range(len(labels))):
        raise ConfigError("field 'id2label' must number classes 0..N-1 without gaps")
    return labels


def _check_consistency(c: DPTConfig) -> None:
    vit = c.family in ("vit", "hybrid")  # a BEiT or Swin-V2 DPT does not use the top-level ViT fields
    if vit and c.hidden_size % c.num_attention_heads:
        raise ConfigError(f"field 'num_attention_heads' ({c.num_attention_heads}) must divide hidden_size ({c.hidden_size})")
    n = len(c.neck_hidden_sizes)
    if n != 4 or len(c.reassemble_factors) != 4 or len(c.backbone_out_indices) != 4:
        raise ConfigError("fields 'neck_hidden_sizes', 'reassemble_factors' and 'backbone_out_indices' must have 4 entries")
    if vit and any(not 0 <= i < c.num_hidden_layers for i in c.backbone_out_indices[len(c.neck_ignore_stages):]):
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
