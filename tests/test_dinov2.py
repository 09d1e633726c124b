"""Our DINOv2 backbone against transformers' Dinov2Backbone, on tiny models with random weights.

At the trained square size the two must agree. At any other size they must NOT: transformers 5.x
resizes the position table to size (h, w), the original dinov2 code (which Depth Anything and the
dpt-dinov2 heads were trained with) uses scale factors (h + 0.1) / gh. There we compare against
transformers with its position resize replaced by the original rule, written here from the
reference notes (shared/reference/depth_anything.md), independently of our module.

The weights are sized so every part matters: a std-1 position table (so its resampling shows),
layer scales around 0.5 (so swapping them shows), matrices ~ 1/sqrt(fan_in).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers.models.dinov2 import modeling_dinov2

from depth_anything import original_interpolate_pos_encoding as original_rule  # the test oracle
from dpt_cli.backbone_parse import parse_dinov2
from dpt_cli.model import dinov2
from dpt_cli.model.dinov2 import Dinov2Backbone

STAGES = ["stage1", "stage2", "stage3", "stage4"]
CASES = {
    "plain": {},
    "swiglu": {"use_swiglu_ffn": True},
    "no_layernorm": {"apply_layernorm": False},
    # six blocks, the last one never read (and so never run by ours)
    "no_qkv_bias": {"qkv_bias": False, "num_hidden_layers": 6, "out_features": ["stage1", "stage3", "stage4", "stage5"]},
}
TRAINED = (56, 56)  # a 4 x 4 token grid
# Non-square, both orientations, a downsampled grid, a square grid of another count, and one with the
# trained patch count (2 x 8 = 16) but not square: the original resizes that one too.
SIZES = [(56, 84), (84, 56), (28, 70), (70, 70), (28, 112)]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "layer_scale" in name:
                p.copy_(0.5 + 0.2 * r)
            elif name.endswith(("position_embeddings", "cls_token", "mask_token")):
                p.copy_(r)
            elif p.ndim == 1:
                p.copy_((1.0 if re.search(r"norm\d?\.weight$", name) else 0.0) + 0.3 * r)
            else:
                p.copy_(r / math.sqrt(p[0].numel()))


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5.x in-memory Dinov2Backbone names -> ours, written independently of the module.

    Separate q/k/v projections are stacked into one qkv (rows q, k, v); SwiGLU gate/up into one fc1
    (rows gate, up)."""
    subs = [
        (r"^embeddings\.cls_token$", "cls_token"),
        (r"^embeddings\.mask_token$", "mask_token"),
        (r"^embeddings\.position_embeddings$", "pos_embed"),
        (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
        (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
        (r"\.attention\.o_proj\.", ".attn.proj."),
        (r"\.layer_scale([12])\.lambda1$", r".layer_scale\1"),
        (r"\.mlp\.down_proj\.", ".mlp.fc2."),
        (r"^layernorm\.", "norm."),
    ]
    fused = {"attention": (("q_proj", "k_proj", "v_proj"), "attn.qkv"), "mlp": (("gate_proj", "up_proj"), "mlp.fc1")}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"^(.*)\.(attention|mlp)\.(q_proj|k_proj|v_proj|gate_proj|up_proj)\.(weight|bias)$", key)
        if m:
            parts, target = fused[m[2]]
            if m[3] != parts[0]:
                continue
            value = torch.cat([state[f"{m[1]}.{m[2]}.{p}.{m[4]}"] for p in parts])
            key = f"{m[1]}.{target}.{m[4]}"
        for pattern, repl in subs:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


_BUILT: dict[str, tuple] = {}


def _pair(case: str):
    """(transformers model, ours) with the same random weights, eval mode; built once per case."""
    if case not in _BUILT:
        kwargs = {"out_features": STAGES, "apply_layernorm": True, "num_hidden_layers": 4, **CASES[case]}
        hf_cfg = transformers.Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_attention_heads=2,
                                           reshape_hidden_states=False, **kwargs)
        ref = transformers.Dinov2Backbone(hf_cfg).eval()
        _randomise(ref, seed=sorted(CASES).index(case))
        cfg = parse_dinov2(hf_cfg.to_dict())
        ours = Dinov2Backbone(cfg).eval()
        ours.out_indices = cfg.out_indices  # a plain attribute, for _ours only
        ours.load_state_dict(_rename(ref.state_dict()), strict=True)
        _BUILT[case] = (ref, ours)
    return _BUILT[case]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _input(size, batch=2, seed=0):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def _ours(ours, x, indices=None):
    """Our outputs for `indices` (default: the config's out_indices, the stages transformers returns)."""
    with torch.no_grad():
        return ours.forward_intermediates(x, indices or ours.out_indices)


def _theirs(ref, x):
    with torch.no_grad():
        return ref(x).feature_maps


def _resize(kind: str):
    """A stand-in for dinov2.interpolate_pos_embed: the correct rule ("copy") or one mutation of it."""

    def resize(pos_embed, table_grid, grid):
        (gh, gw), (h, w) = table_grid, grid
        if h * w == gh * gw and h == w:
            return pos_embed
        t = pos_embed[0, 1:].float().t().reshape(1, -1, gh, gw)
        kw = {"mode": "bicubic", "align_corners": False, "antialias": kind == "antialias"}
        if kind == "no_offset":
            t = F.interpolate(t, size=(h, w), **kw)
        elif kind == "swap_hw":
            t = F.interpolate(t, scale_factor=((w + 0.1) / gh, (h + 0.1) / gw), **kw)
        else:
            t = F.interpolate(t, scale_factor=((h + 0.1) / gh, (w + 0.1) / gw), **kw)
        return torch.cat([pos_embed[:, :1], t.to(pos_embed.dtype).flatten(2).transpose(1, 2)], dim=1)

    return resize


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_dict_keys_match_renamed_transformers(case):
    ref, ours = _pair(case)
    assert sorted(ours.state_dict()) == sorted(_rename(ref.state_dict()))
    assert not any(True for _ in ours.buffers())


@pytest.mark.parametrize("case", sorted(CASES))
def test_trained_size_matches_transformers(case):
    ref, ours = _pair(case)
    x = _input(TRAINED)
    mine, grid = _ours(ours, x)
    theirs = _theirs(ref, x)
    assert grid == (4, 4) and len(mine) == len(theirs) == len(ref.out_features)
    for a, b in zip(mine, theirs):
        assert a.shape == b.shape == (2, 17, 32)
        assert _rel(a, b) <= 1e-5


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("case", sorted(CASES))
def test_other_sizes_match_transformers_with_original_rule(case, size, monkeypatch):
    ref, ours = _pair(case)
    x = _input(size)
    mine, grid = _ours(ours, x)
    monkeypatch.setattr(modeling_dinov2.Dinov2Embeddings, "interpolate_pos_encoding", original_rule)
    theirs = _theirs(ref, x)
    assert grid == (size[0] // 14, size[1] // 14)
    for a, b in zip(mine, theirs):
        assert a.shape == b.shape == (2, 1 + grid[0] * grid[1], 32)
        assert _rel(a, b) <= 1e-5, (case, size, _rel(a, b))


@pytest.mark.parametrize("size", [(56, 84), (84, 56), (70, 70)], ids=str)
def test_differs_from_unpatched_transformers(size):
    """The documented gap: transformers 5.24 resizes by size, without the +0.1."""
    ref, ours = _pair("plain")
    x = _input(size)
    mine, _ = _ours(ours, x)
    assert max(_rel(a, b) for a, b in zip(mine, _theirs(ref, x))) > 1e-3


def test_pos_embed_rule_identity_only_for_trained_square():
    pos = torch.randn(1, 17, 8)
    assert dinov2.interpolate_pos_embed(pos, (4, 4), (4, 4)) is pos
    same_count = dinov2.interpolate_pos_embed(pos, (4, 4), (2, 8))
    assert same_count.shape == (1, 17, 8) and not torch.equal(same_count, pos)
    assert torch.equal(same_count[:, 0], pos[:, 0])  # the class entry is never resampled
    half = dinov2.interpolate_pos_embed(pos.half(), (4, 4), (3, 5))
    assert half.dtype == torch.float16 and half.shape == (1, 16, 8)


def test_stops_after_deepest_requested_block():
    ref, ours = _pair("plain")
    x = _input(TRAINED, batch=1)
    few, _ = _ours(ours, x, (2, 0))
    theirs = _theirs(ref, x)
    assert len(few) == 2 and _rel(few[0], theirs[2]) <= 1e-5 and _rel(few[1], theirs[0]) <= 1e-5
    called = []
    handle = ours.blocks[2].register_forward_pre_hook(lambda *a: called.append(1))
    try:
        _ours(ours, x, (0, 1))
    finally:
        handle.remove()
    assert not called


@pytest.mark.parametrize("mutation", ["no_offset", "antialias", "swap_hw"])
def test_pos_rule_mutations_are_caught(mutation, monkeypatch):
    """Each plausible mistake in the resize moves our output far beyond the tolerance at a
    non-square size; the unmutated stand-in reproduces it (so only the mutation differs)."""
    _, ours = _pair("plain")
    x = _input((56, 84))
    good, _ = _ours(ours, x)
    monkeypatch.setattr(dinov2, "interpolate_pos_embed", _resize("copy"))
    same, _ = _ours(ours, x)
    assert max(_rel(a, b) for a, b in zip(same, good)) <= 1e-6
    monkeypatch.setattr(dinov2, "interpolate_pos_embed", _resize(mutation))
    bad, _ = _ours(ours, x)
    assert max(_rel(a, b) for a, b in zip(bad, good)) > 1e-3


def test_layer_scale_swap_is_caught():
    _, ours = _pair("plain")
    x = _input((56, 84))
    good, _ = _ours(ours, x)
    with torch.no_grad():
        saved = [(b.layer_scale1.clone(), b.layer_scale2.clone()) for b in ours.blocks]
        try:
            for b, (s1, s2) in zip(ours.blocks, saved):
                b.layer_scale1.copy_(s2)
                b.layer_scale2.copy_(s1)
            bad, _ = _ours(ours, x)
        finally:
            for b, (s1, s2) in zip(ours.blocks, saved):
                b.layer_scale1.copy_(s1)
                b.layer_scale2.copy_(s2)
    assert max(_rel(a, b) for a, b in zip(bad, good)) > 1e-3
