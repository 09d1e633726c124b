"""Fake original Depth Anything (V2, V2 metric, V1) checkpoints and an independent rename to transformers.

The manifests (tests/data, copied from ../shared/reference) list every key and shape of the V2
relative releases (S, B, L) and of the metric Hypersim ViT-S. depth_anything.md says the metric files
(Hypersim and VKITTI) and the V1 files have exactly the key set of the V2 relative file of the same
size, so every stem maps onto one of three manifests.

The rename and the DepthAnythingConfig below follow depth_anything.md's "transformers layout" section
directly (no dpt_cli code), so that a converter can be checked against a second source. The result
uses transformers' on-disk names (the 4.x names hub files carry and `save_pretrained` writes);
transformers 5.x renames the Dinov2 attention keys in memory (`attention.q_proj` ...) on load.

`original_reference` is the project's stand-in for the original code: transformers'
DepthAnythingForDepthEstimation with the position-embedding resize replaced by the original DINOv2
rule (+0.1 offset, scale factors, bicubic, no antialias), the only forward difference the doc found.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import types
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

DATA = Path(__file__).parent / "data"

_SIZE_MANIFEST = {"s": "depth_anything_v2_vits", "b": "depth_anything_v2_vitb", "l": "depth_anything_v2_vitl"}

# stem -> manifest stem (the V2 relative file of the same size; metric and V1 reuse its key set)
STEMS: dict[str, str] = {
    **{f"depth_anything_v2_vit{s}": m for s, m in _SIZE_MANIFEST.items()},
    **{f"depth_anything_v2_metric_hypersim_vit{s}": m for s, m in _SIZE_MANIFEST.items()},
    **{f"depth_anything_v2_metric_vkitti_vit{s}": m for s, m in _SIZE_MANIFEST.items()},
    **{f"depth_anything_vit{s}14": m for s, m in _SIZE_MANIFEST.items()},
}
# Manifests that exist as files (the metric Hypersim ViT-S one must equal the relative ViT-S one).
MANIFEST_FILES = (*_SIZE_MANIFEST.values(), "depth_anything_v2_metric_hypersim_vits")

# depth_anything.md, "Releases": nn.Parameter count of the state dict (= transformers' model, since
# every key has a target and nothing is added) and number of keys.
ORIGINAL = {
    "depth_anything_v2_vits": (24_785_089, 239),
    "depth_anything_v2_vitb": (97_470_785, 239),
    "depth_anything_v2_vitl": (335_315_649, 407),
}

_STEM = re.compile(r"depth_anything_(?:v2_(?:metric_(?P<metric>hypersim|vkitti)_)?vit(?P<s2>[sbl])|vit(?P<s1>[sbl])14)")


def _parse(stem: str) -> re.Match:
    m = _STEM.fullmatch(stem)
    if m is None or stem not in STEMS:
        raise KeyError(f"not a Depth Anything release: {stem!r}")
    return m


def size(stem: str) -> str:
    """'s', 'b' or 'l'."""
    m = _parse(stem)
    return m["s2"] or m["s1"]


def version(stem: str) -> int:
    return 1 if _parse(stem)["s1"] else 2


def is_metric(stem: str) -> bool:
    return _parse(stem)["metric"] is not None


def max_depth(stem: str) -> int | None:
    """20 m (Hypersim, indoor), 80 m (VKITTI, outdoor); None for relative models (not in the file)."""
    return {"hypersim": 20, "vkitti": 80, None: None}[_parse(stem)["metric"]]


def checkpoint_name(stem: str) -> str:
    _parse(stem)
    return f"{stem}.pth"


def manifest_file(name: str) -> dict:
    """A manifest file: {"checkpoint": file name, "params": count, "keys": {key: shape}}."""
    if name not in MANIFEST_FILES:
        raise KeyError(f"no manifest file for {name!r}")
    return json.loads((DATA / f"da2_keys_{name}.json").read_text())


def manifest(stem: str) -> dict[str, list[int]]:
    """Every key of the original state dict of `stem` -> its shape."""
    _parse(stem)
    return manifest_file(STEMS[stem])["keys"]


# ---------------------------------------------------------------------------------------------
# Fake checkpoints

_LAYER_NORM_WEIGHT = re.compile(r"pretrained\.(blocks\.\d+\.norm[12]|norm)\.weight")
_CONV_TRANSPOSE = re.compile(r"depth_head\.resize_layers\.[01]\.weight")  # [in, out, k, k], k == stride
_FINAL_CONV = "depth_head.scratch.output_conv2.2.weight"


def _fake_tensor(key: str, shape: list[int], g: torch.Generator, metric: bool) -> torch.Tensor:
    def randn(*s):
        return torch.randn(*s, generator=g)

    if key.endswith((".ls1.gamma", ".ls2.gamma")):
        return 0.5 + 0.05 * randn(shape)  # layer scale: tiny values would hide attention and MLP
    if key == "pretrained.pos_embed":
        return randn(shape)  # std 1: the position table (and its resize) must matter
    if key in ("pretrained.cls_token", "pretrained.mask_token"):
        return 0.02 * randn(shape)
    if key == _FINAL_CONV:
        w = randn(shape) / math.prod(shape[1:]) ** 0.5
        # relative: the 32 inputs come out of a ReLU (>= 0, shared mean); signed weights may let the
        # final ReLU zero the whole map. Non-negative weights give a positive, varying depth.
        # metric: a sigmoid follows; signed weights keep it off saturation and varying.
        return w if metric else w.abs()
    if _LAYER_NORM_WEIGHT.fullmatch(key):
        return 1.0 + 0.1 * randn(shape)
    if len(shape) <= 1:
        return 0.1 * randn(shape)
    fan_in = shape[0] if _CONV_TRANSPOSE.fullmatch(key) else math.prod(shape[1:])
    return randn(shape) / fan_in**0.5


def fake_checkpoint(stem: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 weights with every key and shape of release `stem`, at realistic scales."""
    g = torch.Generator().manual_seed(seed)
    metric = is_metric(stem)
    return {key: _fake_tensor(key, shape, g, metric) for key, shape in manifest(stem).items()}


def meta_checkpoint(stem: str) -> dict[str, torch.Tensor]:
    """Every key of the release as a float32 meta tensor (shape and dtype only, no memory)."""
    return {key: torch.empty(shape, device="meta") for key, shape in manifest(stem).items()}


# ---------------------------------------------------------------------------------------------
# Original -> transformers (on-disk names), depth_anything.md "Renames"

Repl = str | Callable[[re.Match], str]
_WB = r"(weight|bias)"
_BLOCK = r"pretrained\.blocks\.(\d+)\."
_LAYER = r"backbone.encoder.layer.\1."

_RULES: list[tuple[str, Repl]] = [
    (r"pretrained\.cls_token", "backbone.embeddings.cls_token"),
    (r"pretrained\.mask_token", "backbone.embeddings.mask_token"),
    (r"pretrained\.pos_embed", "backbone.embeddings.position_embeddings"),
    (r"pretrained\.patch_embed\.proj\." + _WB, r"backbone.embeddings.patch_embeddings.projection.\1"),
    (r"pretrained\.norm\." + _WB, r"backbone.layernorm.\1"),
    (_BLOCK + r"(norm1|norm2|mlp\.fc1|mlp\.fc2)\." + _WB, _LAYER + r"\2.\3"),
    (_BLOCK + r"attn\.proj\." + _WB, _LAYER + r"attention.output.dense.\2"),
    (_BLOCK + r"ls([12])\.gamma", _LAYER + r"layer_scale\2.lambda1"),
    (r"depth_head\.projects\.([0-3])\." + _WB, r"neck.reassemble_stage.layers.\1.projection.\2"),
    (r"depth_head\.resize_layers\.([013])\." + _WB, r"neck.reassemble_stage.layers.\1.resize.\2"),
    (r"depth_head\.scratch\.layer([1-4])_rn\.weight", lambda m: f"neck.convs.{int(m[1]) - 1}.weight"),
    (
        r"depth_head\.scratch\.refinenet([1-4])\.out_conv\." + _WB,
        lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}.projection.{m[2]}",
    ),
    (
        r"depth_head\.scratch\.refinenet([1-4])\.resConfUnit([12])\.conv([12])\." + _WB,
        lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}.residual_layer{m[2]}.convolution{m[3]}.{m[4]}",
    ),
    (r"depth_head\.scratch\.output_conv1\." + _WB, r"head.conv1.\1"),
    (r"depth_head\.scratch\.output_conv2\.0\." + _WB, r"head.conv2.\1"),
    (r"depth_head\.scratch\.output_conv2\.2\." + _WB, r"head.conv3.\1"),
]
_QKV = re.compile(_BLOCK + r"attn\.qkv\." + _WB)


def expected_transformers_state(original: Mapping[str, torch.Tensor], stem: str) -> dict[str, torch.Tensor]:
    """What a correct conversion of release `stem` must contain, in transformers' on-disk layout.

    Works on any mapping of key -> tensor, meta tensors included. Every key has a target (nothing is
    dropped); an unknown key raises KeyError. qkv rows [0:C] query, [C:2C] key, [2C:3C] value.
    """
    _parse(stem)
    out: dict[str, torch.Tensor] = {}

    def put(new: str, tensor: torch.Tensor) -> None:
        if new in out:
            raise KeyError(f"two keys map to {new!r}")
        out[new] = tensor

    for key, tensor in original.items():
        m = _QKV.fullmatch(key)
        if m:
            if tensor.shape[0] % 3:
                raise ValueError(f"{key}: {tuple(tensor.shape)} has no three equal row blocks")
            for part, t in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                put(f"backbone.encoder.layer.{m[1]}.attention.attention.{part}.{m[2]}", t.clone())
            continue
        for pattern, repl in _RULES:
            new, n = re.subn(f"^(?:{pattern})$", repl, key)
            if n:
                break
        else:
            raise KeyError(f"no rename rule for {key!r} ({stem})")
        put(new, tensor)
    return out


# ---------------------------------------------------------------------------------------------
# transformers' DepthAnythingConfig per release (the conversion script's table)

_SIZES = {  # hidden, layers, heads, fusion_hidden_size, neck_hidden_sizes
    "s": (384, 12, 6, 64, [48, 96, 192, 384]),
    "b": (768, 12, 12, 128, [96, 192, 384, 768]),
    "l": (1024, 24, 16, 256, [256, 512, 1024, 1024]),
}
_OUT_INDICES = {  # (version, size) -> stage indices; stage 0 = embeddings, stage k = block k-1
    (1, "s"): [9, 10, 11, 12],
    (1, "b"): [9, 10, 11, 12],
    (1, "l"): [21, 22, 23, 24],
    (2, "s"): [3, 6, 9, 12],
    (2, "b"): [3, 6, 9, 12],
    (2, "l"): [5, 12, 18, 24],
}


def out_indices(stem: str) -> list[int]:
    return list(_OUT_INDICES[version(stem), size(stem)])


def transformers_config(stem: str) -> dict:
    """DepthAnythingConfig kwargs as the conversion script builds them for `stem`.

    Relative models leave max_depth at the config default (1): transformers 5.x multiplies the
    final ReLU by it, so None would break the forward pass.
    """
    hidden, layers, heads, fusion, neck = _SIZES[size(stem)]
    config = {
        "backbone_config": {
            "model_type": "dinov2",
            "image_size": 518,  # Dinov2Config's default 224 would give a 257-row position table
            "patch_size": 14,
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "mlp_ratio": 4,
            "layerscale_value": 1.0,
            "layer_norm_eps": 1e-6,
            "qkv_bias": True,
            "use_swiglu_ffn": False,
            "out_features": [f"stage{i}" for i in out_indices(stem)],
            "apply_layernorm": True,
            "reshape_hidden_states": False,
        },
        "reassemble_hidden_size": hidden,
        "patch_size": 14,
        "reassemble_factors": [4, 2, 1, 0.5],
        "neck_hidden_sizes": list(neck),
        "fusion_hidden_size": fusion,
        "head_hidden_size": 32,
        "head_in_index": -1,
        "depth_estimation_type": "metric" if is_metric(stem) else "relative",
    }
    if is_metric(stem):
        config["max_depth"] = max_depth(stem)
    return config


# ---------------------------------------------------------------------------------------------
# The stand-in for the original code: transformers + the original position-embedding resize


def original_interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINOv2's rule as Depth Anything runs it (depth_anything.md, "Position-embedding interpolation").

    Bound to a transformers Dinov2Embeddings (`self`), same signature as its own method: `embeddings`
    is the token sequence (class token first), height/width the input size in pixels. Skipped only
    when the patch count equals the table's and the input is square; otherwise the 37x37 patch part is
    resized in float32 with scale factors ((H/14 + 0.1)/37, (W/14 + 0.1)/37), height first, bicubic,
    align_corners off, antialias off, and cast back to the table's dtype.
    """
    table = self.position_embeddings
    num_patches = embeddings.shape[1] - 1
    num_positions = table.shape[1] - 1
    if num_patches == num_positions and height == width:
        return table
    patch = self.patch_embeddings.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    side = math.sqrt(num_positions)
    grid = int(side)
    dim = embeddings.shape[-1]
    h0, w0 = height // patch_h + 0.1, width // patch_w + 0.1
    pos = table.float()
    class_pos = pos[:, :1]
    patch_pos = pos[:, 1:].reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(
        patch_pos,
        scale_factor=(h0 / side, w0 / side),
        mode="bicubic",
        align_corners=False,
        antialias=False,
    )
    if patch_pos.shape[-2:] != (int(h0), int(w0)):
        raise AssertionError(f"resized table {tuple(patch_pos.shape[-2:])} != patch grid {(int(h0), int(w0))}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((class_pos, patch_pos), dim=1).to(table.dtype)


def patch_position_interpolation(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the Dinov2 position-table resize of `model` (this instance only) by the original rule."""
    embeddings = model.backbone.embeddings
    embeddings.interpolate_pos_encoding = types.MethodType(original_interpolate_pos_encoding, embeddings)
    return model


def original_reference(original_state: Mapping[str, torch.Tensor], stem: str) -> torch.nn.Module:
    """transformers' DepthAnythingForDepthEstimation holding `original_state` (renamed by
    `expected_transformers_state`, loaded from a temporary hub-style folder so that transformers 5.x
    applies its own on-load renames), with the original position-embedding resize; eval mode."""
    from safetensors.torch import save_file
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    state = expected_transformers_state(original_state, stem)
    with tempfile.TemporaryDirectory() as folder:
        DepthAnythingConfig(**transformers_config(stem)).save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in state.items()}, str(Path(folder) / "model.safetensors"), metadata={"format": "pt"})
        model, info = DepthAnythingForDepthEstimation.from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise RuntimeError(f"{stem}: loading the expected state was not clean: {problems}")
    return patch_position_interpolation(model.float().eval())
