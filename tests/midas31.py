"""Fake original MiDaS v3.1 checkpoints (BEiT and Swin-V2 DPT) and an independent rename to transformers.

The manifests (tests/data, copied from ../shared/reference) list every key and shape of each v3.1
release. The rename and the DPTConfig below follow midas_v31.md's "transformers layout" section
(plus huggingface_layout.md for the shared neck/head) directly, so that a converter can be checked
against a second source. The result uses transformers' on-disk names (what `save_pretrained`
writes and hub safetensors hold); transformers 5.x renames BEiT keys in memory on load.

The two buffers stored in the original files get their true values, built here from the description
in midas_v31.md (not from timm): BEiT's int64 `relative_position_index` and Swin-V2's float32
`attn_mask` (0 within a shifted-window region, -100 across).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
RELEASES = (
    "dpt_beit_large_512",
    "dpt_beit_large_384",
    "dpt_beit_base_384",
    "dpt_swin2_large_384",
    "dpt_swin2_base_384",
    "dpt_swin2_tiny_256",
)

# midas_v31.md, "Parameter counts in transformers" and "Keys" (on-disk layout).
TRANSFORMERS_PARAMS = {
    "dpt_beit_large_512": 343_987_393,
    "dpt_beit_large_384": 343_311_553,
    "dpt_beit_base_384": 110_761_153,
    "dpt_swin2_large_384": 211_871_797,
    "dpt_swin2_base_384": 101_351_865,
    "dpt_swin2_tiny_256": 40_930_795,
}
TRANSFORMERS_KEYS = {
    "dpt_beit_large_512": 507,
    "dpt_beit_large_384": 507,
    "dpt_beit_base_384": 291,
    "dpt_swin2_large_384": 519,
    "dpt_swin2_base_384": 519,
    "dpt_swin2_tiny_256": 291,
}


def is_beit(stem: str) -> bool:
    return stem.startswith("dpt_beit_")


def _check(stem: str) -> None:
    if stem not in RELEASES:
        raise KeyError(f"not a MiDaS v3.1 release: {stem!r}")


def manifest_file(stem: str) -> dict:
    """The whole manifest: {"checkpoint": file name, "params": nn.Parameter count, "keys": {key: shape}}."""
    _check(stem)
    return json.loads((DATA / f"midas31_keys_{stem}.json").read_text())


def manifest(stem: str) -> dict[str, list[int]]:
    """Every key of the original state dict -> its shape."""
    return manifest_file(stem)["keys"]


def image_size(stem: str) -> int:
    _check(stem)
    return int(stem.rsplit("_", 1)[1])


# ---------------------------------------------------------------------------------------------
# Buffers with their true values


def beit_relative_position_index(w: int) -> torch.Tensor:
    """int64 [w*w + 1, w*w + 1]; token 0 is cls, patch tokens row-major on a w x w grid.

    Patch pair (yi, xi) -> (yj, xj): (yi - yj + w - 1) * (2w - 1) + (xi - xj + w - 1).
    Row 0 (cls query -> patch keys) = (2w-1)^2, column 0 (patch query -> cls key) = (2w-1)^2 + 1,
    [0, 0] (cls -> cls) = (2w-1)^2 + 2.
    """
    n = w * w
    y, x = torch.arange(n) // w, torch.arange(n) % w
    dy = y[:, None] - y[None, :] + (w - 1)
    dx = x[:, None] - x[None, :] + (w - 1)
    offsets = (2 * w - 1) ** 2
    index = torch.empty(n + 1, n + 1, dtype=torch.int64)
    index[1:, 1:] = dy * (2 * w - 1) + dx
    index[0, :] = offsets
    index[:, 0] = offsets + 1
    index[0, 0] = offsets + 2
    return index


def swin_attn_mask(grid: int, window: int, shift: int) -> torch.Tensor:
    """float32 [(grid/window)^2, window^2, window^2]: 0 within a region, -100 across.

    The grid is cut into 3 x 3 regions at grid - window and grid - shift (per axis); windows are
    taken row-major over the grid, tokens row-major inside a window.
    """
    assert grid % window == 0 and 0 < shift < window
    coord = torch.arange(grid)
    band = (coord >= grid - window).long() + (coord >= grid - shift).long()  # 0, 1, 2 per axis
    label = band[:, None] * 3 + band[None, :]  # [grid, grid], region id per position
    nw = grid // window
    # [wy, ty, wx, tx] -> [wy, wx, ty, tx] -> [windows, tokens]
    tokens = label.view(nw, window, nw, window).permute(0, 2, 1, 3).reshape(nw * nw, window * window)
    same = tokens[:, :, None] == tokens[:, None, :]
    return torch.where(same, 0.0, -100.0).to(torch.float32)


def swin_stage_geometry(stem: str, stage: int) -> tuple[int, int, int]:
    """(grid, window, shift) of Swin-V2 stage `stage` for this release (midas_v31.md)."""
    _check(stem)
    assert not is_beit(stem)
    grid = image_size(stem) // 4 // 2**stage
    window = 16 if stem == "dpt_swin2_tiny_256" else 24
    if grid <= window:
        return grid, grid, 0
    return grid, window, window // 2


# ---------------------------------------------------------------------------------------------
# Fake checkpoints

_LAYER_NORM_WEIGHT = re.compile(r"(^|\.)(norm\d?|fc_norm|patch_embed\.norm|downsample\.norm)\.weight$")
_CONV_TRANSPOSE = re.compile(r"^pretrained\.act_postprocess[12]\.4\.weight$")  # [in, out, k, k], k == stride


def _fake_tensor(key: str, shape: list[int], g: torch.Generator) -> torch.Tensor:
    def randn(*size):
        return torch.randn(*size, generator=g)

    if key.endswith((".gamma_1", ".gamma_2")):
        return 0.5 + 0.05 * randn(shape)  # layer scale: small values hide attention and MLP
    if key.endswith("relative_position_bias_table"):
        return randn(shape)  # std 1: a small table hides the relative position path
    if key.endswith("logit_scale"):
        return math.log(10.0) + 0.3 * randn(shape)
    if key.endswith("cpb_mlp.0.bias"):
        return 0.5 * randn(shape)  # varied ReLU kinks over the offset table
    if key.endswith("cpb_mlp.2.weight"):
        return 2.0 * randn(shape) / shape[1] ** 0.5  # 16 * sigmoid(.) then spans several logits
    if key == "scratch.output_conv.4.weight":
        # The 32 channels before it come out of a ReLU (all >= 0, with a shared mean): with signed
        # weights the sign of that mean decides the seed's fate, and the final ReLU may zero almost the
        # whole map (a zero map proves nothing). Non-negative weights give a positive, varying depth.
        return randn(shape).abs() / math.prod(shape[1:]) ** 0.5
    if _LAYER_NORM_WEIGHT.search(key):
        return 1.0 + 0.1 * randn(shape)
    if key.endswith("cls_token"):
        return randn(shape)
    if len(shape) <= 1:
        return 0.1 * randn(shape)
    # matrices and convolutions: randn / sqrt(fan_in)
    fan_in = shape[0] if _CONV_TRANSPOSE.match(key) else math.prod(shape[1:])
    return randn(shape) / fan_in**0.5


def fake_checkpoint(stem: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with every key and shape of release `stem`; buffers with their true values."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    beit_index: dict[int, torch.Tensor] = {}
    for key, shape in manifest(stem).items():
        if key.endswith("attn.relative_position_index"):
            w = math.isqrt(shape[0] - 1)
            assert shape == [w * w + 1, w * w + 1] and w == image_size(stem) // 16, (key, shape)
            if w not in beit_index:
                beit_index[w] = beit_relative_position_index(w)
            state[key] = beit_index[w].clone()
        elif key.endswith("attn_mask"):
            stage = int(re.match(r"pretrained\.model\.layers\.(\d+)\.blocks\.\d+\.attn_mask$", key)[1])
            mask = swin_attn_mask(*swin_stage_geometry(stem, stage))
            assert list(mask.shape) == shape, (key, shape, mask.shape)
            state[key] = mask
        else:
            state[key] = _fake_tensor(key, shape, g)
    return state


def meta_checkpoint(stem: str) -> dict[str, torch.Tensor]:
    """Every key of the release as a meta tensor (shape and dtype only, no memory)."""
    state = {}
    for key, shape in manifest(stem).items():
        dtype = torch.int64 if key.endswith("relative_position_index") else torch.float32
        state[key] = torch.empty(shape, dtype=dtype, device="meta")
    return state


# ---------------------------------------------------------------------------------------------
# Original -> transformers (on-disk names)

Repl = str | Callable[[re.Match], str]

_DROP_BEIT = [r"pretrained\.model\.head\.", r"pretrained\.model\.fc_norm\.", r".*\.attn\.relative_position_index$"]
_DROP_SWIN = [r"pretrained\.model\.head\.", r"pretrained\.model\.norm\.", r".*\.attn_mask$"]

_BEIT: list[tuple[str, Repl]] = [
    (r"pretrained\.model\.cls_token$", "backbone.embeddings.cls_token"),
    (r"pretrained\.model\.patch_embed\.proj\.", "backbone.embeddings.patch_embeddings.projection."),
    (r"pretrained\.model\.blocks\.(\d+)\.gamma_(\d)$", r"backbone.encoder.layer.\1.lambda_\2"),
    (r"pretrained\.model\.blocks\.(\d+)\.norm1\.", r"backbone.encoder.layer.\1.layernorm_before."),
    (r"pretrained\.model\.blocks\.(\d+)\.norm2\.", r"backbone.encoder.layer.\1.layernorm_after."),
    (r"pretrained\.model\.blocks\.(\d+)\.mlp\.fc1\.", r"backbone.encoder.layer.\1.intermediate.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.mlp\.fc2\.", r"backbone.encoder.layer.\1.output.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.attn\.proj\.", r"backbone.encoder.layer.\1.attention.output.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.attn\.q_bias$", r"backbone.encoder.layer.\1.attention.attention.query.bias"),
    (r"pretrained\.model\.blocks\.(\d+)\.attn\.v_bias$", r"backbone.encoder.layer.\1.attention.attention.value.bias"),
    (
        r"pretrained\.model\.blocks\.(\d+)\.attn\.relative_position_bias_table$",
        r"backbone.encoder.layer.\1.attention.attention.relative_position_bias.relative_position_bias_table",
    ),
    (r"pretrained\.act_postprocess(\d)\.0\.project\.0\.", lambda m: f"neck.reassemble_stage.readout_projects.{int(m[1]) - 1}.0."),
    (r"pretrained\.act_postprocess(\d)\.3\.", lambda m: f"neck.reassemble_stage.layers.{int(m[1]) - 1}.projection."),
    (r"pretrained\.act_postprocess(\d)\.4\.", lambda m: f"neck.reassemble_stage.layers.{int(m[1]) - 1}.resize."),
]
_BEIT_QKV = (r"pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.weight$", r"backbone.encoder.layer.\1.attention.attention.{part}.weight")

_SWIN_BLOCK = r"pretrained\.model\.layers\.(\d+)\.blocks\.(\d+)\."
_SWIN_NEW = r"backbone.encoder.layers.\1.blocks.\2."
_SWIN: list[tuple[str, Repl]] = [
    (r"pretrained\.model\.patch_embed\.proj\.", "backbone.embeddings.patch_embeddings.projection."),
    (r"pretrained\.model\.patch_embed\.norm\.", "backbone.embeddings.norm."),
    (_SWIN_BLOCK + r"attn\.logit_scale$", _SWIN_NEW + "attention.self.logit_scale"),
    (_SWIN_BLOCK + r"attn\.cpb_mlp\.([02])\.", _SWIN_NEW + r"attention.self.continuous_position_bias_mlp.\3."),
    (_SWIN_BLOCK + r"attn\.q_bias$", _SWIN_NEW + "attention.self.query.bias"),
    (_SWIN_BLOCK + r"attn\.v_bias$", _SWIN_NEW + "attention.self.value.bias"),
    (_SWIN_BLOCK + r"attn\.proj\.", _SWIN_NEW + "attention.output.dense."),
    (_SWIN_BLOCK + r"norm1\.", _SWIN_NEW + "layernorm_before."),
    (_SWIN_BLOCK + r"norm2\.", _SWIN_NEW + "layernorm_after."),
    (_SWIN_BLOCK + r"mlp\.fc1\.", _SWIN_NEW + "intermediate.dense."),
    (_SWIN_BLOCK + r"mlp\.fc2\.", _SWIN_NEW + "output.dense."),
    (r"pretrained\.model\.layers\.(\d+)\.downsample\.(reduction|norm)\.", r"backbone.encoder.layers.\1.downsample.\2."),
]
_SWIN_QKV = (_SWIN_BLOCK + r"attn\.qkv\.weight$", _SWIN_NEW + "attention.self.{part}.weight")

_SHARED: list[tuple[str, Repl]] = [
    (r"scratch\.layer(\d)_rn\.", lambda m: f"neck.convs.{int(m[1]) - 1}."),
    (
        r"scratch\.refinenet(\d)\.resConfUnit([12])\.conv([12])\.",
        lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}.residual_layer{m[2]}.convolution{m[3]}.",
    ),
    (r"scratch\.refinenet(\d)\.out_conv\.", lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}.projection."),
    (r"scratch\.output_conv\.([024])\.", r"head.head.\1."),
]


def expected_transformers_state(original: Mapping[str, torch.Tensor], stem: str) -> dict[str, torch.Tensor]:
    """What a correct conversion of release `stem` must contain, in transformers' on-disk layout.

    Works on any mapping of key -> tensor, meta tensors included. Every key must be renamed or
    explicitly dropped; anything else raises KeyError.
    """
    _check(stem)
    beit = is_beit(stem)
    drop = _DROP_BEIT if beit else _DROP_SWIN
    rules = (_BEIT if beit else _SWIN) + _SHARED
    qkv_pattern, qkv_new = _BEIT_QKV if beit else _SWIN_QKV
    out: dict[str, torch.Tensor] = {}
    for key, tensor in original.items():
        if any(re.match(p, key) for p in drop):
            continue
        m = re.match(qkv_pattern, key)
        if m:
            # rows [0:D] query, [D:2D] key, [2D:3D] value
            for part, t in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                out[m.expand(qkv_new.replace("{part}", part))] = t.clone()
            continue
        for pattern, repl in rules:
            new, n = re.subn("^" + pattern, repl, key)
            if n:
                break
        else:
            raise KeyError(f"no rename rule for {key!r} ({stem})")
        if new in out:
            raise KeyError(f"two keys map to {new!r}")
        out[new] = tensor
    return out


# ---------------------------------------------------------------------------------------------
# transformers' DPTConfig per release

_BEIT_SIZES = {  # hidden, layers, heads, mlp, out_features, neck_hidden_sizes
    "large": (1024, 24, 16, 4096, ["stage6", "stage12", "stage18", "stage24"], [256, 512, 1024, 1024]),
    "base": (768, 12, 12, 3072, ["stage3", "stage6", "stage9", "stage12"], [96, 192, 384, 768]),
}
_SWIN_SIZES = {  # embed_dim, depths, heads, window, pretrained windows, neck_hidden_sizes
    "large": (192, [2, 2, 18, 2], [6, 12, 24, 48], 24, [12, 12, 12, 6], [192, 384, 768, 1536]),
    "base": (128, [2, 2, 18, 2], [4, 8, 16, 32], 24, [12, 12, 12, 6], [128, 256, 512, 1024]),
    "tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24], 16, [0, 0, 0, 0], [96, 192, 384, 768]),
}


def transformers_config(stem: str) -> dict:
    """DPTConfig kwargs as transformers' converters set them, except BEiT's layer_norm_eps (1e-6, the original's)."""
    _check(stem)
    size = stem.split("_")[2]
    if is_beit(stem):
        hidden, layers, heads, mlp, out_features, neck = _BEIT_SIZES[size]
        backbone = {
            "model_type": "beit",
            "image_size": image_size(stem),
            "patch_size": 16,
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": mlp,
            "use_relative_position_bias": True,
            "use_absolute_position_embeddings": False,
            "reshape_hidden_states": False,
            "out_features": out_features,
            "layer_scale_init_value": 0.1,
            "use_mean_pooling": True,
            "layer_norm_eps": 1e-6,  # the converters leave 1e-12 (BeitConfig's default): ~3e-4 of range off
        }
    else:
        embed_dim, depths, heads, window, pretrained, neck = _SWIN_SIZES[size]
        backbone = {
            "model_type": "swinv2",
            "image_size": image_size(stem),
            "patch_size": 4,
            "embed_dim": embed_dim,
            "depths": depths,
            "num_heads": heads,
            "window_size": window,
            "pretrained_window_sizes": pretrained,
            "out_features": ["stage1", "stage2", "stage3", "stage4"],
            "layer_norm_eps": 1e-5,
            "mlp_ratio": 4.0,
            "qkv_bias": True,
        }
    return {
        "backbone_config": backbone,
        "neck_hidden_sizes": neck,
        "reassemble_factors": [4, 2, 1, 0.5],
        "readout_type": "project",
        "fusion_hidden_size": 256,
        "head_in_index": -1,
        "is_hybrid": False,
        "use_batch_norm_in_fusion_residual": False,
        "add_projection": False,
    }
