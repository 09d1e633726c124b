"""The transformer backbones of MiDaS v3.1 (BEiT, Swin-V2) and of DINOv2 depth models: frozen
configs, read and written as transformers' `BeitConfig` / `Swinv2Config` / `Dinov2Config` inside a
DPT (or Depth Anything) config's `backbone_config`.

Only what changes the computation is typed; every other key survives in `extra`. Each failure is
one ConfigError naming the field (`backbone_config.NAME`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .config import CONFIG_LIMITS, ConfigError

P = "backbone_config."
BEIT, SWINV2, DINOV2 = "beit", "swinv2", "dinov2"


@dataclass(frozen=True)
class BeitConfig:
    """BEiT (transformers `BeitConfig`): ViT blocks with per-block relative position bias and layer scale."""

    image_size: tuple[int, int] = (384, 384)  # the trained size: it sets the bias table's grid
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    layer_scale: bool = True  # layer_scale_init_value > 0: lambda_1/lambda_2 exist
    out_indices: tuple[int, ...] = (2, 5, 8, 11)  # 0-based blocks whose outputs the neck reads
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    model_type = BEIT

    @property
    def grid(self) -> tuple[int, int]:
        """The trained token grid (h, w): the relative position table is (2h-1)(2w-1) + 3 rows."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return (self.hidden_size,) * len(self.out_indices)


@dataclass(frozen=True)
class Swinv2Config:
    """Swin Transformer V2 (transformers `Swinv2Config`): four stages of shifted-window attention."""

    image_size: tuple[int, int] = (256, 256)  # the trained size: it fixes each stage's window
    patch_size: int = 4
    num_channels: int = 3
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 8
    pretrained_window_sizes: tuple[int, ...] = (0, 0, 0, 0)
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5
    qkv_bias: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    model_type = SWINV2

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    def stage_window(self, stage: int) -> tuple[int, int]:
        """(window, shift) of stage `stage`'s blocks, fixed by the trained size as in transformers and
        timm: a stage whose grid is no larger than the window takes the grid as window and no shift."""
        side = self.grid[0] // 2**stage
        window = min(side, self.window_size)
        return window, (0 if side <= window else self.window_size // 2)


@dataclass(frozen=True)
class Dinov2Config:
    """DINOv2 ViT (transformers `Dinov2Config`): patch 14, layer scale, optional SwiGLU MLP (giant),
    a learned position table for the trained grid (37x37 at 518), resized per input."""

    image_size: tuple[int, int] = (518, 518)
    patch_size: int = 14
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6
    use_swiglu_ffn: bool = False
    qkv_bias: bool = True
    apply_layernorm: bool = True  # the final LayerNorm on each tapped output (Depth Anything: yes; DPT-DINOv2: no)
    use_mask_token: bool = True  # a training-only parameter every checkpoint carries
    out_indices: tuple[int, ...] = (2, 5, 8, 11)  # 0-based blocks whose outputs the neck reads
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    model_type = DINOV2

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def mlp_hidden(self) -> int:
        """The MLP's hidden width; SwiGLU keeps two thirds of it, rounded up to a multiple of 8."""
        hidden = int(self.hidden_size * self.mlp_ratio)
        return (int(hidden * 2 / 3) + 7) // 8 * 8 if self.use_swiglu_ffn else hidden

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return (self.hidden_size,) * len(self.out_indices)


# --- reading -------------------------------------------------------------------------------------


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


def parse_beit(raw: Mapping[str, Any]) -> BeitConfig:
    _require(raw, "use_relative_position_bias", True, False, "dpt runs BEiT with per-block relative position bias only")
    _require(raw, "use_shared_relative_position_bias", False, False, "a bias shared by all blocks is not supported")
    _require(raw, "use_absolute_position_embeddings", False, False, "absolute position embeddings are not supported")
    _require(raw, "reshape_hidden_states", False, False, "DPT's readout needs the class token (false)")
    _require(raw, "add_fpn", False, False, "the BEiT FPN is not part of DPT")
    _require(raw, "hidden_act", "gelu", "gelu", "only 'gelu' is supported")
    layers = _int(raw, "num_hidden_layers", 12, CONFIG_LIMITS["num_hidden_layers"])
    hidden = _int(raw, "hidden_size", 768, CONFIG_LIMITS["hidden_size"])
    heads = _int(raw, "num_attention_heads", 12, CONFIG_LIMITS["num_attention_heads"])
    if hidden % heads:
        raise ConfigError(f"field '{P}num_attention_heads' ({heads}) must divide hidden_size ({hidden})")
    scale = _number(raw, "layer_scale_init_value", 0.1, 0.0, 1e6)
    cfg = BeitConfig(
        image_size=_size_pair(raw, 224),
        patch_size=_int(raw, "patch_size", 16, CONFIG_LIMITS["patch_size"]),
        num_channels=_int(raw, "num_channels", 3, CONFIG_LIMITS["num_channels"]),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=_int(raw, "intermediate_size", 3072, CONFIG_LIMITS["intermediate_size"]),
        layer_norm_eps=_number(raw, "layer_norm_eps", 1e-12, 0.0, 1.0),
        layer_scale=scale > 0,
        out_indices=_stages(raw, layers),
        extra=dict(raw),
    )
    if min(cfg.grid) < 1:
        raise ConfigError(f"field '{P}image_size' must be at least one patch ({cfg.patch_size} pixels) a side")
    return cfg


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
        image_size=_size_pair(raw, 224),
        patch_size=_int(raw, "patch_size", 4, CONFIG_LIMITS["patch_size"]),
        num_channels=_int(raw, "num_channels", 3, CONFIG_LIMITS["num_channels"]),
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
    layers = _int(raw, "num_hidden_layers", 12, CONFIG_LIMITS["num_hidden_layers"])
    hidden = _int(raw, "hidden_size", 768, CONFIG_LIMITS["hidden_size"])
    heads = _int(raw, "num_attention_heads", 12, CONFIG_LIMITS["num_attention_heads"])
    if hidden % heads:
        raise ConfigError(f"field '{P}num_attention_heads' ({heads}) must divide hidden_size ({hidden})")
    cfg = Dinov2Config(
        image_size=_size_pair(raw, 224),
        patch_size=_int(raw, "patch_size", 14, CONFIG_LIMITS["patch_size"]),
        num_channels=_int(raw, "num_channels", 3, CONFIG_LIMITS["num_channels"]),
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
    if min(cfg.grid) < 1:
        raise ConfigError(f"field '{P}image_size' must be at least one patch ({cfg.patch_size} pixels) a side")
    return cfg


def _require_bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)
    return value


# --- writing -------------------------------------------------------------------------------------


def dump(b: BeitConfig | Swinv2Config | Dinov2Config) -> dict[str, Any]:
    """The backbone_config object transformers reads; unknown keys of the source are kept."""
    side = b.image_size[0] if b.image_size[0] == b.image_size[1] else list(b.image_size)
    common = {"model_type": b.model_type, "image_size": side, "patch_size": b.patch_size, "num_channels": b.num_channels,
              "layer_norm_eps": b.layer_norm_eps, "hidden_act": "gelu"}
    if isinstance(b, Dinov2Config):
        stages = [i + 1 for i in b.out_indices]
        own = {"hidden_size": b.hidden_size, "num_hidden_layers": b.num_hidden_layers, "num_attention_heads": b.num_attention_heads,
               # transformers types Dinov2Config.mlp_ratio as an int
               "mlp_ratio": int(b.mlp_ratio) if b.mlp_ratio.is_integer() else b.mlp_ratio,
               "use_swiglu_ffn": b.use_swiglu_ffn, "qkv_bias": b.qkv_bias,
               "apply_layernorm": b.apply_layernorm, "use_mask_token": b.use_mask_token, "reshape_hidden_states": False}
    elif isinstance(b, BeitConfig):
        stages = [i + 1 for i in b.out_indices]
        scale = b.extra.get("layer_scale_init_value", 0.1) if b.layer_scale else 0.0
        own = {"hidden_size": b.hidden_size, "num_hidden_layers": b.num_hidden_layers, "num_attention_heads": b.num_attention_heads,
               "intermediate_size": b.intermediate_size, "layer_scale_init_value": scale, "use_relative_position_bias": True,
               "use_absolute_position_embeddings": False, "reshape_hidden_states": False}
    else:
        stages = [1, 2, 3, 4]
        own = {"embed_dim": b.embed_dim, "depths": list(b.depths), "num_heads": list(b.num_heads), "window_size": b.window_size,
               "pretrained_window_sizes": list(b.pretrained_window_sizes), "mlp_ratio": b.mlp_ratio, "qkv_bias": b.qkv_bias}
    out = {**b.extra, **common, **own, "out_features": [f"stage{k}" for k in stages], "out_indices": stages}
    return out


# --- inside a DPT config ---------------------------------------------------------------------------

# transformers' DPTConfig defaults for the ViT fields, which a DPT with a backbone_config does not use.
UNUSED_VIT_FIELDS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                     "backbone_out_indices": [2, 5, 8, 11], "reassemble_factors": [4, 2, 1, 0.5]}
PARSERS = {BEIT: parse_beit, SWINV2: parse_swinv2, DINOV2: parse_dinov2}


def check_in_dpt(backbone: BeitConfig | Swinv2Config | Dinov2Config, neck_hidden_sizes: tuple[int, ...], task: str | None) -> None:
    """What the DPT fields must say for this backbone; a ConfigError names the field."""
    name = {BEIT: "BEiT", SWINV2: "Swin-V2", DINOV2: "DINOv2"}[backbone.model_type]
    if task not in (None, "depth"):
        raise ConfigError(f"field 'architectures': dpt runs {name} backbones for depth only (DPTForDepthEstimation)")
    if isinstance(backbone, Swinv2Config) and tuple(neck_hidden_sizes) != backbone.stage_widths:
        raise ConfigError(
            f"field 'neck_hidden_sizes' must be the Swin-V2 stage widths {list(backbone.stage_widths)}, got {list(neck_hidden_sizes)}"
        )
