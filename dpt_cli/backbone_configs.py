"""The transformer backbones of MiDaS v3.1 (BEiT, Swin-V2) and of DINOv2 depth models: frozen
configs, read and written as transformers' `BeitConfig` / `Swinv2Config` / `Dinov2Config` inside a
DPT (or Depth Anything) config's `backbone_config`.

Only what changes the computation is typed; every other key survives in `extra`. Reading, where
each failure is one ConfigError naming the field (`backbone_config.NAME`), is in
`dpt_cli.backbone_parse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .config import ConfigError

P = "backbone_config."
BEIT, SWINV2, DINOV2 = "beit", "swinv2", "dinov2"


class _Patches:
    """What every backbone config derives from its `image_size` and `patch_size`."""

    @property
    def grid(self) -> tuple[int, int]:
        """The trained token grid (h, w): it sizes BEiT's bias table, Swin-V2's windows, DINOv2's
        position table."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size


@dataclass(frozen=True)
class BeitConfig(_Patches):
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
    def stage_widths(self) -> tuple[int, ...]:
        return (self.hidden_size,) * len(self.out_indices)


@dataclass(frozen=True)
class Swinv2Config(_Patches):
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

    def stage_window(self, stage: int) -> tuple[int, int]:
        """(window, shift) of stage `stage`'s blocks, fixed by the trained size as in transformers and
        timm: a stage whose grid is no larger than the window takes the grid as window and no shift."""
        side = self.grid[0] // 2**stage
        window = min(side, self.window_size)
        return window, (0 if side <= window else self.window_size // 2)


@dataclass(frozen=True)
class Dinov2Config(_Patches):
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
    def mlp_hidden(self) -> int:
        """The MLP's hidden width; SwiGLU keeps two thirds of it, rounded up to a multiple of 8."""
        hidden = int(self.hidden_size * self.mlp_ratio)
        return (int(hidden * 2 / 3) + 7) // 8 * 8 if self.use_swiglu_ffn else hidden

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return (self.hidden_size,) * len(self.out_indices)


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


def check_in_dpt(backbone: BeitConfig | Swinv2Config | Dinov2Config, neck_hidden_sizes: tuple[int, ...], task: str | None) -> None:
    """What the DPT fields must say for this backbone; a ConfigError names the field."""
    name = {BEIT: "BEiT", SWINV2: "Swin-V2", DINOV2: "DINOv2"}[backbone.model_type]
    if task not in (None, "depth"):
        raise ConfigError(f"field 'architectures': dpt runs {name} backbones for depth only (DPTForDepthEstimation)")
    if isinstance(backbone, Swinv2Config) and tuple(neck_hidden_sizes) != backbone.stage_widths:
        raise ConfigError(
            f"field 'neck_hidden_sizes' must be the Swin-V2 stage widths {list(backbone.stage_widths)}, got {list(neck_hidden_sizes)}"
        )
