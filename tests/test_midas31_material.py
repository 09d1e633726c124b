"""Checks of the MiDaS v3.1 test material itself (tests/midas31.py): manifests, fake checkpoints,
the expected transformers layout and configs, against midas_v31.md and transformers' own DPT."""

from __future__ import annotations

import functools
import itertools
import json
import math
import random

import pytest
import torch
from midas31 import (
    RELEASES,
    TRANSFORMERS_KEYS,
    TRANSFORMERS_PARAMS,
    beit_relative_position_index,
    expected_transformers_state,
    fake_checkpoint,
    is_beit,
    manifest,
    manifest_file,
    meta_checkpoint,
    swin_attn_mask,
    swin_stage_geometry,
    transformers_config,
)
from safetensors.torch import save_file
from transformers import DPTConfig, DPTForDepthEstimation
from transformers.core_model_loading import revert_weight_conversion
from transformers.initialization import no_init_weights
from transformers.models.beit.modeling_beit import BeitRelativePositionBias

# midas_v31.md, "Releases" table: nn.Parameter count of the original model and number of keys.
ORIGINAL = {
    "dpt_beit_large_512": (345_014_441, 487),
    "dpt_beit_large_384": (344_338_601, 487),
    "dpt_beit_base_384": (111_531_689, 283),
    "dpt_swin2_large_384": (213_411_869, 477),
    "dpt_swin2_base_384": (102_378_913, 477),
    "dpt_swin2_tiny_256": (41_701_331, 273),
}
BUFFERS = ("attn.relative_position_index", "attn_mask")


@pytest.fixture(scope="module")
def fakes():
    return functools.cache(fake_checkpoint)  # one fake per release stem, built on first use


def meta_model(stem: str) -> DPTForDepthEstimation:
    with torch.device("meta"):
        return DPTForDepthEstimation(DPTConfig(**transformers_config(stem)))


def shapes(state) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("stem", RELEASES)
def test_manifest_matches_doc(stem):
    info = manifest_file(stem)
    keys = info["keys"]
    assert info["checkpoint"] == f"{stem}.pt"
    assert (info["params"], len(keys)) == ORIGINAL[stem]
    params = sum(math.prod(s) for k, s in keys.items() if not k.endswith(BUFFERS))
    assert params == info["params"]
    n_buffers = sum(k.endswith(BUFFERS) for k in keys)
    assert n_buffers == ({"large": 24, "base": 12}[stem.split("_")[2]] if is_beit(stem) else 2)


@pytest.mark.parametrize("stem", RELEASES)
def test_expected_state_is_transformers_on_disk_layout(stem):
    model = meta_model(stem)
    # transformers 5.x renames BEiT keys in memory; save_pretrained reverts to these on-disk names
    theirs = shapes(revert_weight_conversion(model, model.state_dict()))
    mine = shapes(expected_transformers_state(meta_checkpoint(stem), stem))
    assert mine.keys() == theirs.keys(), (sorted(mine.keys() - theirs.keys())[:5], sorted(theirs.keys() - mine.keys())[:5])
    assert mine == theirs
    assert len(mine) == TRANSFORMERS_KEYS[stem]
    n = sum(p.numel() for p in model.parameters())
    assert n == TRANSFORMERS_PARAMS[stem] == sum(math.prod(s) for s in mine.values())
    if not is_beit(stem):  # Swin-V2: same names in memory and on disk
        assert shapes(model.state_dict()) == theirs

    # exactly the documented keys are dropped, and they account for the parameter difference
    dropped = {k for k in manifest(stem) if k.startswith(("pretrained.model.head.", "pretrained.model.fc_norm.", "pretrained.model.norm.")) or k.endswith(BUFFERS)}
    assert len(manifest(stem)) - len(dropped) + sum(k.endswith("attn.qkv.weight") for k in manifest(stem)) * 2 == len(mine)
    dropped_params = sum(math.prod(s) for k, s in manifest(stem).items() if k in dropped and not k.endswith(BUFFERS))
    assert ORIGINAL[stem][0] - dropped_params == n

    eps = model.config.backbone_config.layer_norm_eps
    assert eps == (1e-6 if is_beit(stem) else 1e-5)


def test_unknown_key_is_refused():
    state = meta_checkpoint("dpt_swin2_tiny_256")
    state["pretrained.model.something.weight"] = torch.empty(3, device="meta")
    with pytest.raises(KeyError, match="something"):
        expected_transformers_state(state, "dpt_swin2_tiny_256")


def test_qkv_split_and_renames_keep_values():
    stem = "dpt_swin2_tiny_256"
    original = {k: torch.arange(math.prod(s), dtype=torch.float32).view(s) + i for i, (k, s) in enumerate(manifest(stem).items())}
    out = expected_transformers_state(original, stem)
    qkv = original["pretrained.model.layers.2.blocks.3.attn.qkv.weight"]  # [3*384, 384]
    prefix = "backbone.encoder.layers.2.blocks.3.attention.self."
    assert torch.equal(out[prefix + "query.weight"], qkv[:384])
    assert torch.equal(out[prefix + "key.weight"], qkv[384:768])
    assert torch.equal(out[prefix + "value.weight"], qkv[768:])
    assert out[prefix + "query.bias"] is original["pretrained.model.layers.2.blocks.3.attn.q_bias"]
    assert out[prefix + "value.bias"] is original["pretrained.model.layers.2.blocks.3.attn.v_bias"]
    # reversed fusion order; refinenet4's (unused in the original) resConfUnit1 is kept
    assert out["neck.fusion_stage.layers.0.residual_layer1.convolution2.bias"] is original["scratch.refinenet4.resConfUnit1.conv2.bias"]
    assert out["neck.fusion_stage.layers.3.projection.weight"] is original["scratch.refinenet1.out_conv.weight"]


# --- buffers: true values -------------------------------------------------------------------------


def brute_force_beit_index(w: int) -> torch.Tensor:
    n = w * w
    index = torch.zeros(n + 1, n + 1, dtype=torch.int64)
    for i in range(n + 1):
        for j in range(n + 1):
            if i == 0 and j == 0:
                index[i, j] = (2 * w - 1) ** 2 + 2
            elif i == 0:
                index[i, j] = (2 * w - 1) ** 2
            elif j == 0:
                index[i, j] = (2 * w - 1) ** 2 + 1
            else:
                (yi, xi), (yj, xj) = divmod(i - 1, w), divmod(j - 1, w)
                index[i, j] = (yi - yj + w - 1) * (2 * w - 1) + (xi - xj + w - 1)
    return index


def test_beit_index_builder_small_grids():
    for w in (1, 2, 3, 5):
        assert torch.equal(beit_relative_position_index(w), brute_force_beit_index(w)), w


def test_beit_base_buffers(fakes):
    state = fakes("dpt_beit_base_384")
    w, offsets = 24, 47**2
    indices = [v for k, v in state.items() if k.endswith("relative_position_index")]
    assert len(indices) == 12
    index = indices[0]
    assert index.dtype == torch.int64 and index.shape == (w * w + 1, w * w + 1)
    assert all(torch.equal(i, index) for i in indices)
    assert index[0, 0] == offsets + 2
    assert (index[0, 1:] == offsets).all() and (index[1:, 0] == offsets + 1).all()
    assert int(index.max()) == state["pretrained.model.blocks.0.attn.relative_position_bias_table"].shape[0] - 1
    assert (index[1:, 1:] < offsets).all() and index.diagonal()[1:].eq((w - 1) * (2 * w - 1) + w - 1).all()
    rng = random.Random(0)
    for _ in range(2000):
        i, j = rng.randrange(1, w * w + 1), rng.randrange(1, w * w + 1)
        (yi, xi), (yj, xj) = divmod(i - 1, w), divmod(j - 1, w)
        assert index[i, j] == (yi - yj + w - 1) * (2 * w - 1) + (xi - xj + w - 1)
    # the same convention as transformers' BEiT (which got it from timm)
    assert torch.equal(index, BeitRelativePositionBias.generate_relative_position_index((w, w)))


def brute_force_swin_mask(grid: int, window: int, shift: int) -> torch.Tensor:
    def region(c):
        return 0 if c < grid - window else (1 if c < grid - shift else 2)

    nw, a = grid // window, window * window
    mask = torch.zeros(nw * nw, a, a)
    for n, (wy, wx) in enumerate(itertools.product(range(nw), range(nw))):
        pos = [(wy * window + ty, wx * window + tx) for ty in range(window) for tx in range(window)]
        for i, (yi, xi) in enumerate(pos):
            for j, (yj, xj) in enumerate(pos):
                if (region(yi), region(xi)) != (region(yj), region(xj)):
                    mask[n, i, j] = -100.0
    return mask


def test_swin_mask_builder_small_grids():
    for grid, window, shift in ((8, 4, 2), (12, 4, 2), (6, 3, 1)):
        assert torch.equal(swin_attn_mask(grid, window, shift), brute_force_swin_mask(grid, window, shift))


def test_swin_tiny_buffers(fakes):
    stem = "dpt_swin2_tiny_256"
    state = fakes(stem)
    masks = {k: v for k, v in state.items() if k.endswith("attn_mask")}
    assert sorted(masks) == ["pretrained.model.layers.0.blocks.1.attn_mask", "pretrained.model.layers.1.blocks.1.attn_mask"]
    assert [swin_stage_geometry(stem, s) for s in range(4)] == [(64, 16, 8), (32, 16, 8), (16, 16, 0), (8, 8, 0)]
    model = meta_model(stem)  # only its Python-side window/shift sizes are used below
    for stage, (key, mask) in enumerate(sorted(masks.items())):
        grid, window, shift = swin_stage_geometry(stem, stage)
        nw, a = (grid // window) ** 2, window * window
        assert mask.dtype == torch.float32 and mask.shape == (nw, a, a)
        assert set(mask.unique().tolist()) == {0.0, -100.0}
        assert torch.equal(mask, mask.transpose(1, 2)) and (mask.diagonal(dim1=1, dim2=2) == 0).all()
        assert (mask[0] == 0).all()  # top-left window lies in one region
        # bottom-right window: four equal quadrants, each token sees 3/4 of the window as -100
        assert int((mask[-1] == -100).sum()) == a * a * 3 // 4
        block = model.backbone.encoder.layers[stage].blocks[1]
        assert (block.window_size, block.shift_size) == (window, shift)
        assert torch.equal(mask, block.get_attn_mask(grid, grid, torch.float32))


@pytest.mark.parametrize("stem", ["dpt_swin2_tiny_256", "dpt_beit_base_384"])
def test_fake_weights_are_realistic(fakes, stem):
    state = fakes(stem)
    assert state.keys() == manifest(stem).keys()
    assert all(list(v.shape) == manifest(stem)[k] for k, v in state.items())
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    ln = torch.cat([v for k, v in state.items() if k.endswith(("norm1.weight", "norm2.weight"))])
    assert abs(ln.mean() - 1) < 0.02 and 0.05 < ln.std() < 0.2
    if is_beit(stem):
        gammas = torch.cat([v for k, v in state.items() if k.endswith(("gamma_1", "gamma_2"))])
        assert abs(gammas.mean() - 0.5) < 0.01
        table = state["pretrained.model.blocks.3.attn.relative_position_bias_table"]
        assert 0.9 < table.std() < 1.1
    else:
        scales = torch.cat([v.flatten() for k, v in state.items() if k.endswith("logit_scale")])
        assert abs(scales.mean() - math.log(10)) < 0.15
    qkv = next(v for k, v in state.items() if k.endswith("attn.qkv.weight"))
    assert abs(qkv.std() * qkv.shape[1] ** 0.5 - 1) < 0.05


# --- numeric: the expected state really drives transformers' model ------------------------------------


def check_depth(depth: torch.Tensor, size: int) -> None:
    assert depth.shape == (1, size, size)
    assert torch.isfinite(depth).all()
    assert depth.std() > 1e-3 * depth.abs().max() > 0
    assert (depth > 0).float().mean() > 0.5  # the final ReLU did not zero the map


def test_swin_tiny_expected_state_loads_strictly_and_runs(fakes):
    stem = "dpt_swin2_tiny_256"
    want = expected_transformers_state(fakes(stem), stem)
    with no_init_weights():  # skips only the random init (~2 s); buffers are built as usual
        model = DPTForDepthEstimation(DPTConfig(**transformers_config(stem))).eval()
    model.load_state_dict(want, strict=True)  # every parameter and persistent buffer
    assert all(torch.equal(v, want[k]) for k, v in revert_weight_conversion(model, model.state_dict()).items())
    torch.manual_seed(0)
    with torch.no_grad():
        depth = model(pixel_values=torch.rand(1, 3, 256, 256) * 2 - 1).predicted_depth
    check_depth(depth, 256)


def test_beit_base_expected_state_loads_from_disk_and_runs(fakes, tmp_path):
    stem = "dpt_beit_base_384"
    want = expected_transformers_state(fakes(stem), stem)
    DPTConfig(**transformers_config(stem)).save_pretrained(tmp_path)
    save_file(want, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert json.loads((tmp_path / "config.json").read_text())["backbone_config"]["layer_norm_eps"] == 1e-6
    model, info = DPTForDepthEstimation.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # the on-disk names load with nothing missing or left over
    model.eval()
    # in memory BEiT is renamed (q_proj...); values must still be the original rows
    qkv = fakes(stem)["pretrained.model.blocks.7.attn.qkv.weight"]
    attn = model.backbone.beit.layers[7].attention
    assert torch.equal(attn.k_proj.weight, qkv[768:1536]) and torch.equal(attn.v_proj.weight, qkv[1536:])
    saved = revert_weight_conversion(model, model.state_dict())
    assert saved.keys() == want.keys() and all(torch.equal(saved[k], want[k]) for k in want)
    torch.manual_seed(0)
    with torch.no_grad():
        depth = model(pixel_values=torch.rand(1, 3, 384, 384) * 2 - 1).predicted_depth
    check_depth(depth, 384)


@pytest.mark.parametrize("stem", [s for s in RELEASES if not is_beit(s)])
def test_swin_geometry_matches_manifest_and_transformers(stem):
    model = meta_model(stem)
    keys = manifest(stem)
    for stage in range(4):
        grid, window, shift = swin_stage_geometry(stem, stage)
        for b, block in enumerate(model.backbone.encoder.layers[stage].blocks):
            assert block.window_size == window
            assert block.shift_size == (shift if b % 2 else 0)
        key = f"pretrained.model.layers.{stage}.blocks.1.attn_mask"
        assert (key in keys) == (shift > 0)
        if shift:
            mask = swin_attn_mask(grid, window, shift)
            assert list(mask.shape) == keys[key]
            assert torch.equal(mask, model.backbone.encoder.layers[stage].blocks[1].get_attn_mask(grid, grid, torch.float32))
