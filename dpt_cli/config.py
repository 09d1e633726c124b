"""Model configuration: frozen dataclasses read from and written to a transformers `config.json`.

Only the fields that change what inference computes are typed here. Every other key of the
source file is kept verbatim in `extra` so that a load/save round trip loses nothing. Reading and
validating (types, sane bounds, consistency) is in `dpt_cli.config_parse`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import DPTError

if TYPE_CHECKING:
    from .backbone_configs import BeitConfig, Dinov2Config, Swinv2Config

DEPTH = "depth"
SEGMENTATION = "segmentation"
ARCHITECTURES = {DEPTH: "DPTForDepthEstimation", SEGMENTATION: "DPTForSemanticSegmentation"}
SUPPORTED_ACTIVATIONS = ("gelu", "relu")

# Upper bounds on every number that sizes an allocation or a loop when the model is built. They
# sit far above every real model (DPT-Large: hidden 1024, 24 layers, 16 heads, MLP 4096; the
# biggest backbones DPT is used with, BEiT/Swin/DINOv2-giant: hidden 1536, 40 layers, MLP ~6144;
# BiT-R50: stage depths 3-4-9, widths up to 2048) so that no real checkpoint comes near them.
# What they stop is a typo or a hostile file (`num_hidden_layers: 1000000` building for minutes,
# `hidden_size: 1e9` overflowing) before the model's constructor runs. List fields bound each entry.
CONFIG_LIMITS: dict[str, int] = {
    "hidden_size": 8192,
    "num_hidden_layers": 256,
    "num_attention_heads": 256,
    "intermediate_size": 32768,
    "patch_size": 256,
    "num_channels": 64,
    "fusion_hidden_size": 8192,
    "head_hidden_size": 8192,
    "neck_hidden_sizes": 8192,
    "reassemble_factors": 32,  # up-sample at most x32, down-sample at most /32
    "image_size": 16384,  # each side
    "backbone_featmap_shape": 16384,
    "backbone_out_indices": 255,  # a block index: below the num_hidden_layers limit
    "backbone_config.depths": 64,  # blocks per stage (ResNet-152's deepest stage has 36)
    "backbone_config.hidden_sizes": 16384,
    "backbone_config.embedding_size": 4096,
    "backbone_config.num_groups": 4096,
    "backbone_config.window_size": 256,  # Swin-V2 attention windows (the largest release: 24)
    "id2label": 65536,  # classes: ids are pixel values of the 16-bit label PNG `dpt segment` writes
}
MAX_CONFIG_BYTES = 16 * 2**20  # ADE20K's 150-class config is ~10 kB; 65536 labels take ~2 MB
MAX_NESTING = 32  # real configs nest 3 levels (config > backbone_config > id2label)


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
    head's output x into metres as `1 / max(depth_scale * x + depth_shift, 1e-8)`. A Depth Anything
    config (transformers' `DepthAnythingConfig`) is read into the same fields, with `model_type`
    "depth_anything" (see `dpt_cli.config_depth_anything`).
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
    backbone_config: "BitConfig | BeitConfig | Swinv2Config | Dinov2Config | None" = None
    backbone_featmap_shape: tuple[int, ...] | None = None
    neck_ignore_stages: tuple[int, ...] = ()
    depth_scale: float | None = None
    depth_shift: float | None = None
    invert_depth: bool = False
    # Depth Anything (`model_type` "depth_anything"): its head's hidden width and output; DINOv2-DPT
    # (the dinov2 depther): `max_depth` clamps its metres as the original does
    model_type: str = "dpt"
    head_hidden_size: int = 32
    depth_estimation_type: str = "relative"
    max_depth: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def family(self) -> str:
        """The backbone family: "vit", "hybrid" (BiT + ViT), "beit" or "swinv2"."""
        if self.is_hybrid:
            return "hybrid"
        return getattr(self.backbone_config, "model_type", "vit")

    @property
    def token_width(self) -> int:
        """Width of the tokens the neck reassembles (the transformer's hidden size)."""
        return self.backbone_config.hidden_size if self.family in ("beit", "dinov2") else self.hidden_size

    @property
    def is_depth_anything(self) -> bool:
        return self.model_type == "depth_anything"

    @property
    def depth_anything_version(self) -> int:
        """1 when the head reads the last four blocks (V1's choice), else 2 (its outputs go back to the
        photo differently)."""
        layers = self.backbone_config.num_hidden_layers
        return 1 if self.backbone_config.out_indices == tuple(range(layers - 4, layers)) else 2

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
        """Whether the output is metres (else inverse relative depth). Every DINOv2-DPT release is
        metric (NYU, KITTI); Depth Anything says so in `depth_estimation_type`."""
        if self.is_depth_anything:
            return self.depth_estimation_type == "metric"
        return self.depth_scale is not None or self.invert_depth or self.family == "dinov2"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "DPTConfig":
        """Parse and validate (types, bounds, consistency); ConfigError names the offending field."""
        from .config_parse import parse_dpt  # the parsing half; it imports these classes

        return parse_dpt(raw)

    def to_dict(self) -> dict[str, Any]:
        if self.is_depth_anything:
            from .config_depth_anything import dump_depth_anything

            return dump_depth_anything(self)
        return _dump_dpt(self)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "DPTConfig":
        """Read and validate a config.json; every ConfigError starts with the file's path."""
        path = Path(path)
        raw = _read_json_object(path)
        try:
            return cls.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def replace(self, **changes: Any) -> "DPTConfig":
        return replace(self, **changes)


# --- reading -------------------------------------------------------------------------------


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; an unreadable, oversized or absurdly nested file raises ConfigError."""
    text = _read_bounded(path)
    try:
        raw = json.loads(text)
    except RecursionError:  # the decoder recurses once per level; deeper values are refused in parsing
        raise ConfigError(f"{path}: JSON nested too deeply (a config.json is a few levels deep)") from None
    except ValueError as exc:  # JSONDecodeError, or a number past Python's 4300-digit int limit
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return raw


def _read_bounded(path: Path) -> str:
    """The file's text, refusing one over MAX_CONFIG_BYTES without reading it all (even a pipe)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB: too large for a config.json")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


# --- writing ---------------------------------------------------------------------------------

_OURS = ("task", "id2label", "backbone_config", "extra", "model_type", "head_hidden_size", "depth_estimation_type")
_OURS_ONLY = ("depth_scale", "depth_shift", "invert_depth", "max_depth")


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
    if c.backbone_config is not None and not c.is_hybrid:
        from .backbone_configs import dump

        out["backbone_config"] = dump(c.backbone_config)
    elif c.backbone_config is not None:
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
