"""Checks of the Depth Anything test material itself (tests/depth_anything.py): manifests, fake
checkpoints, the expected transformers layout and configs, and the patched-transformers stand-in for
the original code, against depth_anything.md and transformers' own DepthAnything / Dinov2."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from depth_anything import (
    MANIFEST_FILES,
    ORIGINAL,
    STEMS,
    checkpoint_name,
    expected_transformers_state,
    fake_checkpoint,
    is_metric,
    manifest,
    manifest_file,
    max_depth,
    meta_checkpoint,
    original_interpolate_pos_encoding,
    original_reference,
    out_indices,
    size,
    transformers_config,
    version,
)
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
from transformers.core_model_loading import revert_weight_conversion
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

WIDTH = {"s": 384, "b": 768, "l": 1024}
# transformers 5.x in-memory names of the Dinov2 attention (conversion_mapping.py, "Dinov2Model")
IN_MEMORY = {
    "attention.attention.query.": "attention.q_proj.",
    "attention.attention.key.": "attention.k_proj.",
    "attention.attention.value.": "attention.v_proj.",
    "attention.output.dense.": "attention.o_proj.",
}


def shapes(state) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def meta_model(stem: str) -> DepthAnythingForDepthEstimation:
    with torch.device("meta"):
        return DepthAnythingForDepthEstimation(DepthAnythingConfig(**transformers_config(stem)))


def unpatched(embeddings: Dinov2Embeddings):
    """transformers' own resize, bound to the same module."""
    return Dinov2Embeddings.interpolate_pos_encoding.__get__(embeddings)


# --- manifests and stems ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MANIFEST_FILES)
def test_manifest_files_match_doc(name):
    info = manifest_file(name)
    keys = info["keys"]
    relative = "depth_anything_v2_vit" + name[-1]
    assert info["checkpoint"] == f"{name}.pth"
    assert (info["params"], len(keys)) == ORIGINAL[relative]
    assert sum(math.prod(s) for s in keys.values()) == info["params"]  # no buffers: all parameters
    assert keys == manifest_file(relative)["keys"]  # metric = relative key set, same order
    assert all(k.startswith(("pretrained.", "depth_head.")) for k in keys)
    assert not any("readout_projects" in k or "resize_layers.2." in k or "running_" in k for k in keys)


def test_stems():
    assert len(STEMS) == 12
    for stem, base in STEMS.items():
        assert base == f"depth_anything_v2_vit{size(stem)}"
        assert manifest(stem) == manifest(base)
        assert checkpoint_name(stem) == stem + ".pth"
        assert version(stem) == (1 if stem.endswith("14") else 2)
        assert is_metric(stem) == ("metric" in stem)
        assert max_depth(stem) == (20 if "hypersim" in stem else 80 if "vkitti" in stem else None)
    with pytest.raises(KeyError):
        manifest("depth_anything_v2_vitg")


# --- the expected state is exactly transformers' on-disk layout --------------------------------------


@pytest.mark.parametrize("stem", sorted(STEMS))
def test_expected_state_is_transformers_on_disk_layout(stem):
    model = meta_model(stem)
    memory = shapes(model.state_dict())
    disk = shapes(revert_weight_conversion(model, model.state_dict()))  # what save_pretrained writes
    mine = shapes(expected_transformers_state(meta_checkpoint(stem), stem))
    assert mine.keys() == disk.keys(), (sorted(mine.keys() - disk.keys())[:5], sorted(disk.keys() - mine.keys())[:5])
    assert mine == disk
    params, n_keys = ORIGINAL[STEMS[stem]]
    n_qkv = sum(k.endswith("attn.qkv.weight") for k in manifest(stem))
    assert len(mine) == n_keys + 4 * n_qkv  # qkv weight and bias -> three each; nothing dropped or added
    assert sum(p.numel() for p in model.parameters()) == params == sum(math.prod(s) for s in mine.values())
    assert not list(model.buffers())

    # in memory only the four Dinov2 attention names differ (transformers 5.x)
    def to_memory(key):
        for old, new in IN_MEMORY.items():
            key = key.replace(old, new)
        return key

    assert {to_memory(k): s for k, s in disk.items()} == memory

    cfg = model.config
    bb = cfg.backbone_config
    assert bb.model_type == "dinov2" and bb.out_indices == out_indices(stem)
    assert out_indices(stem) == {
        (1, "s"): [9, 10, 11, 12], (1, "b"): [9, 10, 11, 12], (1, "l"): [21, 22, 23, 24],
        (2, "s"): [3, 6, 9, 12], (2, "b"): [3, 6, 9, 12], (2, "l"): [5, 12, 18, 24],
    }[version(stem), size(stem)]
    assert (bb.image_size, bb.patch_size, bb.hidden_size, bb.layer_norm_eps) == (518, 14, WIDTH[size(stem)], 1e-6)
    assert memory["backbone.embeddings.position_embeddings"] == (1, 1 + 37 * 37, WIDTH[size(stem)])
    assert bb.apply_layernorm and not bb.reshape_hidden_states and not bb.use_swiglu_ffn
    assert cfg.reassemble_hidden_size == bb.hidden_size and cfg.reassemble_factors == [4, 2, 1, 0.5]
    head = model.head.activation2
    if is_metric(stem):
        assert cfg.depth_estimation_type == "metric" and isinstance(head, torch.nn.Sigmoid)
        assert cfg.max_depth == max_depth(stem)
    else:
        assert cfg.depth_estimation_type == "relative" and isinstance(head, torch.nn.ReLU) and cfg.max_depth == 1


def test_unknown_key_is_refused():
    state = meta_checkpoint("depth_anything_v2_vits")
    state["pretrained.register_tokens"] = torch.empty(1, 4, 384, device="meta")
    with pytest.raises(KeyError, match="register_tokens"):
        expected_transformers_state(state, "depth_anything_v2_vits")
    with pytest.raises(KeyError):
        expected_transformers_state({"depth_head.resize_layers.2.weight": torch.empty(1)}, "depth_anything_v2_vits")


def test_qkv_split_and_renames_keep_values():
    stem = "depth_anything_v2_vitb"
    keys = manifest(stem)
    picked = [
        "pretrained.blocks.7.attn.qkv.weight", "pretrained.blocks.7.attn.qkv.bias", "pretrained.blocks.7.ls2.gamma",
        "pretrained.mask_token", "depth_head.scratch.refinenet4.resConfUnit1.conv2.bias",
        "depth_head.scratch.refinenet1.out_conv.weight", "depth_head.scratch.layer3_rn.weight",
        "depth_head.resize_layers.3.weight", "depth_head.scratch.output_conv2.2.weight",
    ]
    original = {k: torch.arange(math.prod(keys[k]), dtype=torch.float32).view(keys[k]) + i for i, k in enumerate(picked)}
    out = expected_transformers_state(original, stem)
    p = "backbone.encoder.layer.7.attention.attention."
    for suffix in ("weight", "bias"):
        qkv = original[f"pretrained.blocks.7.attn.qkv.{suffix}"]
        assert torch.equal(out[p + "query." + suffix], qkv[:768])
        assert torch.equal(out[p + "key." + suffix], qkv[768:1536])
        assert torch.equal(out[p + "value." + suffix], qkv[1536:])
    assert out["backbone.encoder.layer.7.layer_scale2.lambda1"] is original["pretrained.blocks.7.ls2.gamma"]
    assert out["backbone.embeddings.mask_token"] is original["pretrained.mask_token"]
    # reversed fusion order; refinenet4's (unused in the original) resConfUnit1 is kept
    assert out["neck.fusion_stage.layers.0.residual_layer1.convolution2.bias"] is original["depth_head.scratch.refinenet4.resConfUnit1.conv2.bias"]
    assert out["neck.fusion_stage.layers.3.projection.weight"] is original["depth_head.scratch.refinenet1.out_conv.weight"]
    assert out["neck.convs.2.weight"] is original["depth_head.scratch.layer3_rn.weight"]
    assert out["neck.reassemble_stage.layers.3.resize.weight"] is original["depth_head.resize_layers.3.weight"]
    assert out["head.conv3.weight"] is original["depth_head.scratch.output_conv2.2.weight"]
    assert len(out) == len(picked) + 4


# --- fake weights ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fakes():
    return functools.cache(fake_checkpoint)  # one fake per release stem, built on first use


@pytest.mark.parametrize("stem", ["depth_anything_v2_vits", "depth_anything_v2_metric_hypersim_vits"])
def test_fake_weights_are_realistic(fakes, stem):
    state = fakes(stem)
    assert shapes(state) == {k: tuple(s) for k, s in manifest(stem).items()}
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values())
    ln = torch.cat([v for k, v in state.items() if k.endswith(("norm1.weight", "norm2.weight"))])
    assert abs(ln.mean() - 1) < 0.02 and 0.05 < ln.std() < 0.2
    gammas = torch.cat([v for k, v in state.items() if k.endswith(("ls1.gamma", "ls2.gamma"))])
    assert abs(gammas.mean() - 0.5) < 0.01
    assert 0.95 < state["pretrained.pos_embed"].std() < 1.05
    assert state["pretrained.cls_token"].abs().max() < 0.1
    qkv = state["pretrained.blocks.3.attn.qkv.weight"]
    assert abs(qkv.std() * qkv.shape[1] ** 0.5 - 1) < 0.05
    final = state["depth_head.scratch.output_conv2.2.weight"]
    assert (final.min() < 0) == is_metric(stem)


# --- the original position-embedding rule ----------------------------------------------------------


def _embeddings(table: torch.Tensor) -> Dinov2Embeddings:
    cfg = DepthAnythingConfig(**transformers_config("depth_anything_v2_vits")).backbone_config
    emb = Dinov2Embeddings(cfg)
    with torch.no_grad():
        emb.position_embeddings.copy_(table)
    return emb


def _keys_bicubic_1d(values: torch.Tensor, out_len: int, scale_inv: float, a: float = -0.75) -> torch.Tensor:
    """Resample along dim 0: src = (dst + 0.5) * scale_inv - 0.5, Keys cubic, clamped border taps."""
    def w(t):
        t = abs(t)
        return (a + 2) * t**3 - (a + 3) * t**2 + 1 if t <= 1 else a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a

    n, rows = values.shape[0], []
    for j in range(out_len):
        x = (j + 0.5) * scale_inv - 0.5
        i0 = math.floor(x)
        rows.append(sum(w(x - i) * values[min(max(i, 0), n - 1)] for i in range(i0 - 1, i0 + 3)))
    return torch.stack(rows)


def test_original_position_rule():
    g = torch.Generator().manual_seed(1)
    dim = 384
    rows = torch.randn(37, 1, dim, generator=g).expand(37, 37, dim)  # varies with the row (height) only
    table = torch.cat([torch.randn(1, 1, dim, generator=g), rows.reshape(1, -1, dim)], dim=1)
    emb = _embeddings(table)

    def run(fn, h, w):
        tokens = torch.zeros(1, 1 + (h // 14) * (w // 14), dim)
        return fn(tokens, h, w).detach()

    patched = original_interpolate_pos_encoding.__get__(emb)
    assert patched(torch.zeros(1, 1370, dim), 518, 518) is emb.position_embeddings  # skipped only here
    ours, theirs = run(patched, 518, 700), run(unpatched(emb), 518, 700)
    assert ours.shape == theirs.shape == (1, 1 + 37 * 50, dim)
    assert torch.equal(ours[:, 0], table[:, 0])  # class entry untouched
    grid = ours[0, 1:].view(37, 50, dim)
    assert torch.allclose(grid, grid[:, :1].expand(-1, 50, -1), atol=1e-5)  # height stays on the height axis
    # transformers resizes by size: 37 rows -> 37 rows is the identity; the original resamples with 37.1/37
    assert torch.allclose(theirs[0, 1:].view(37, 50, dim)[:, 0], rows[:, 0], atol=1e-5)
    expected = _keys_bicubic_1d(rows[:, 0].double(), 37, 37 / 37.1).float()
    assert torch.allclose(grid[:, 0], expected, atol=1e-4)
    assert (grid[:, 0] - rows[:, 0]).abs().max() > 1e-2

    # portrait 700x518: the 50-row side is the height; columns still carry the row-only pattern
    portrait = run(patched, 700, 518)[0, 1:].view(50, 37, dim)
    assert torch.allclose(portrait, portrait[:, :1].expand(-1, 37, -1), atol=1e-5)
    expected = _keys_bicubic_1d(rows[:, 0].double(), 50, 37 / 50.1).float()
    assert torch.allclose(portrait[:, 0], expected, atol=1e-4)


# --- numeric: the stand-in for the original code ------------------------------------------------------


@pytest.fixture(scope="module")
def vits(fakes):
    stem = "depth_anything_v2_vits"
    return fakes(stem), original_reference(fakes(stem), stem)


def test_reference_holds_the_expected_state(vits):
    original, model = vits
    want = expected_transformers_state(original, "depth_anything_v2_vits")
    saved = revert_weight_conversion(model, model.state_dict())
    assert saved.keys() == want.keys() and all(torch.equal(saved[k], want[k]) for k in want)
    qkv = original["pretrained.blocks.5.attn.qkv.weight"]
    attn = model.backbone.encoder.layer[5].attention  # in memory: q_proj / k_proj / v_proj / o_proj
    assert torch.equal(attn.k_proj.weight, qkv[384:768]) and torch.equal(attn.v_proj.weight, qkv[768:])
    assert not model.training and model.config.backbone_config.out_indices == [3, 6, 9, 12]


def test_reference_forward_and_position_rule_effect(vits):
    _, model = vits
    emb = model.backbone.embeddings
    patched = emb.interpolate_pos_encoding
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 3, 518, 700, generator=g) - 0.45) / 0.225
    with torch.no_grad():
        depth = model(pixel_values=x).predicted_depth
        try:
            emb.interpolate_pos_encoding = unpatched(emb)
            plain = model(pixel_values=x).predicted_depth
            square = x[..., :518]
            plain_square = emb(square)
        finally:
            emb.interpolate_pos_encoding = patched
        patched_square = emb(square)
    assert depth.shape == (1, 518, 700) and torch.isfinite(depth).all()
    span = float(depth.max() - depth.min())
    assert depth.std() > 1e-2 * depth.abs().max() > 0 and depth.min() > 0
    assert float((depth - plain).abs().max()) > 1e-2 * span  # the doc measured ~4.8e-2
    # 518x518: both skip the resize, so the embeddings (the only place they differ) are equal
    assert float((patched_square - plain_square).abs().max()) <= 1e-6


def test_metric_reference_stays_within_max_depth(fakes):
    stem = "depth_anything_v2_metric_hypersim_vits"
    model = original_reference(fakes(stem), stem)
    assert model.config.max_depth == 20
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        depth = model(pixel_values=(torch.rand(1, 3, 224, 308, generator=g) - 0.45) / 0.225).predicted_depth
    assert depth.shape == (1, 224, 308) and torch.isfinite(depth).all()
    assert 0 < float(depth.min()) and float(depth.max()) < 20
    assert depth.std() > 1e-3 * 20
