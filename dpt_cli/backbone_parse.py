"""Reading a DPT (or Depth Anything) config's `backbone_config` into the frozen BEiT, Swin-V2 and
DINOv2 configs of `dpt_cli.backbone_configs`: types, bounds, consistency; each failure is one
ConfigError naming the field (`backbone_config.NAME`)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from .backbone_configs import BEIT, DINOV2, P, SWINV2, BeitConfig, Dinov2Config, Swinv2Config
from .config import CONFIG_LIMITS, ConfigError


def _fail(name: str, expected: str, value: Any) -> ConfigError:
    from .config_parse import shown_value

    return ConfigError(f"field '{P}{name}' must be {expected}, got {shown_value(value)}")


def _int(raw: Mapping[str, Any], name: str, default: int, limit: int, low: int = 1) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= limit:
        raise _fail(name, f"an integer between {low} and {limit}", value)
    return value


def _ints(raw: Mapping[str, Any], name: str, default: Any, count: int, limit: int, low: int = 1) -> tuple[int, ...]:
    value = raw.get(name, default)
    ok = isinstance(value, (list, tuple)) and len(value) == count
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= limit for v in value):
        raise _fail(name, f"a list of {count} integers between {low} and {limit}", value)
    return tuple(value)


def _number(raw: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _fail(name, f"a number between {low} and {high}", value)
    return float(value)


def _size_pair(raw: Mapping[str, Any], default: int) -> tuple[int, int]:
    value = raw.get("image_size", default)
    sides = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    limit = CONFIG_LIMITS["image_size"]
    if not isinstance(sides, (list, tuple)) or len(sides) not in (1, 2) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit for v in sides
    ):
        raise _fail("image_size", f"an integer or [height, width] between 1 and {limit}", value)
    return (sides[0], sides[-1])


def _require(raw: Mapping[str, Any], name: str, wanted: Any, default: Any, why: str) -> None:
    from .config_parse import shown_value

    if raw.get(name, default) != wanted:
        raise ConfigError(f"field '{P}{name}' is {shown_value(raw.get(name, default))}: {why}")


def _stages(raw: Mapping[str, Any], count: int) -> tuple[int, ...]:
    """0-based stage indices from `out_features` ("stageK": the output of block K-1) or else
    `out_indices` (K)."""
    names, indices = raw.get("out_features"), raw.get("out_indices")
    if names is not None:
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and re.fullmatch(r"stage[1-9]\d*", n) for n in names):
            raise _fail("out_features", "a list of stage names (stage1, stage2, ...)", names)
        picked = tuple(int(n[5:]) for n in names)
    elif isinstance(indices, (list, tuple)) and all(isinstance(k, int) and not isinstance(k, bool) for k in indices):
        picked = tuple(indices)
    else:
        raise _fail("out_features", "the four stages the neck reads (stage1, stage2, ...)", names)
    if len(picked) != 4 or any(not 1 <= k <= count for k in picked) or list(picked) != sorted(set(picked)):
        field = "out_features" if names is not None else "out_indices"
        raise _fail(field, f"four increasing stages among 1..{count}", names if names is not None else indices)
    return tuple(k - 1 for k in picked)


def _transformer(raw: Mapping[str, Any]) -> tuple[int, int, int]:
    """(layers, width, heads) of a ViT-like backbone, the heads dividing the width."""
    layers = _int(raw, "num_hidden_layers", 12, CONFIG_LIMITS["num_hidden_layers"])
    hidden = _int(raw, "hidden_size", 768, CONFIG_LIMITS["hidden_size"])
    heads = _int(raw, "num_attention_heads", 12, CONFIG_LIMITS["num_attention_heads"])
    if hidden % heads:
        raise ConfigError(f"field '{P}num_attention_heads' ({heads}) must divide hidden_size ({hidden})")
    return layers, hidden, heads


def _image(raw: Mapping[str, Any], patch: int) -> dict[str, Any]:
    """The trained image size, the patch size and the input channels (transformers' defaults: 224, 3)."""
    return {
        "image_size": _size_pair(raw, 224),
        "patch_size": _int(raw, "patch_size", patch, CONFIG_LIMITS["patch_size"]),
        "num_channels": _int(raw, "num_channels", 3, CONFIG_LIMITS["num_channels"]),
    }


def _at_least_one_patch(cfg):
    if min(cfg.grid) < 1:
        raise ConfigError(f"field '{P}image_size' must be at least one patch ({cfg.patch_size} pixels) a side")
    return cfg


def parse_beit(raw: Mapping[str, Any]) -> BeitConfig:
    _require(raw, "use_relative_position_bias", True, False, "dpt runs BEiT with per-block relative position bias only")
    _require(raw, "use_shared_relative_position_bias", False, False, "a bias shared by all blocks is not supported")
    _require(raw, "use_absolute_position_embeddings", False, False, "absolute position embeddings are not supported")
    _require(raw, "reshape_hidden_states", False, False, "DPT's readout needs the class token (false)")
    _require(raw, "add_fpn", False, False, "the BEiT FPN is not part of DPT")
    _require(raw, "hidden_act", "gelu", "gelu", "only 'gelu' is supported")
    layers, hidden, heads = _transformer(raw)
    scale = _number(raw, "layer_scale_init_value", 0.1, 0.0, 1e6)
    cfg = BeitConfig(
        **_image(raw, patch=16),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=_int(raw, "intermediate_size", 3072, CONFIG_LIMITS["intermediate_size"]),
        layer_norm_eps=_number(raw, "layer_norm_eps", 1e-12, 0.0, 1.0),
        layer_scale=scale > 0,
        out_indices=_stages(raw, layers),
        extra=dict(raw),
    )
    return _at_least_one_patch(cfg)


def parse_swinv2(raw: Mapping[str, Any]) -> Swinv2Config:
    _require(raw, "use_absolute_embeddings", False, False, "absolute position embeddings are not supported")
    _require(raw, "hidden_act", "gelu", "gelu", "only 'gelu' is supported")
    depths = _ints(raw, "depths", [2, 2, 6, 2], 4, CONFIG_LIMITS["backbone_config.depths"])
    heads = _ints(raw, "num_heads", [3, 6, 12, 24], 4, CONFIG_LIMITS["num_attention_heads"])
    embed = _int(raw, "embed_dim", 96, CONFIG_LIMITS["hidden_size"] // 8)
    for i, h in enumerate(heads):
        if (embed * 2**i) % h:
            raise ConfigError(f"field '{P}num_heads' entry {i} ({h}) must divide the stage width {embed * 2**i}")
    cfg = Swinv2Config(
        **_image(raw, patch=4),
        embed_dim=embed,
        depths=depths,
        num_heads=heads,
        window_size=_int(raw, "window_size", 7, CONFIG_LIMITS["backbone_config.window_size"]),
        pretrained_window_sizes=_windows(raw),
        mlp_ratio=_number(raw, "mlp_ratio", 4.0, 0.01, 64.0),
        layer_norm_eps=_number(raw, "layer_norm_eps", 1e-5, 0.0, 1.0),
        qkv_bias=_require_bool(raw, "qkv_bias", True),
        extra=dict(raw),
    )
    if _stages(raw, 4) != (0, 1, 2, 3):
        raise _fail("out_features", "stage1..stage4 (DPT reads every stage)", raw.get("out_features"))
    if cfg.grid[0] != cfg.grid[1] or cfg.grid[0] < 8 or cfg.grid[0] % 8:
        raise ConfigError(f"field '{P}image_size' must be square and a multiple of {8 * cfg.patch_size} (four stages), got {list(cfg.image_size)}")
    return cfg


def _windows(raw: Mapping[str, Any]) -> tuple[int, ...]:
    """Pretrained window sizes: 0 (none) or at least 2 (the bias coordinates divide by w - 1)."""
    sizes = _ints(raw, "pretrained_window_sizes", [0, 0, 0, 0], 4, CONFIG_LIMITS["backbone_config.window_size"], low=0)
    if 1 in sizes:
        raise _fail("pretrained_window_sizes", "0 (none) or at least 2 per stage", list(sizes))
    return sizes


def parse_dinov2(raw: Mapping[str, Any]) -> Dinov2Config:
    _require(raw, "reshape_hidden_states", False, True, "DPT's neck reads token sequences (false)")
    _require(raw, "hidden_act", "gelu", "gelu", "only 'gelu' is supported")
    if raw.get("num_register_tokens", 0):
        raise ConfigError(f"field '{P}num_register_tokens': DINOv2 with registers is not supported")
    layers, hidden, heads = _transformer(raw)
    cfg = Dinov2Config(
        **_image(raw, patch=14),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        mlp_ratio=_number(raw, "mlp_ratio", 4.0, 0.01, 64.0),
        layer_norm_eps=_number(raw, "layer_norm_eps", 1e-6, 0.0, 1.0),
        use_swiglu_ffn=_require_bool(raw, "use_swiglu_ffn", False),
        qkv_bias=_require_bool(raw, "qkv_bias", True),
        apply_layernorm=_require_bool(raw, "apply_layernorm", True),
        use_mask_token=_require_bool(raw, "use_mask_token", True),
        out_indices=_stages(raw, layers),
        extra=dict(raw),
    )
    return _at_least_one_patch(cfg)


def _require_bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)
    return value


PARSERS = {BEIT: parse_beit, SWINV2: parse_swinv2, DINOV2: parse_dinov2}
