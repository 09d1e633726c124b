"""Our Swin-V2 backbone against transformers' Swinv2Backbone, on tiny models with random weights.

The weights are random but sized so that every part matters: the continuous position bias spans
most of 16 * sigmoid's range and logit scales vary per head, so a wrong offset table, index, shift
or mask moves the output far more than the float32 tolerance.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import transformers

from dpt_cli.backbone_parse import parse_swinv2
from dpt_cli.model.swinv2 import Swinv2Backbone

STAGES = ["stage1", "stage2", "stage3", "stage4"]
CASES = {
    # window 4, trained 64: windows 4/4/4/2, shifts in stages 0 and 1; pretrained windows differ.
    "pretrained": {"image_size": 64, "window_size": 4, "pretrained_window_sizes": [3, 3, 3, 2]},
    "no_pretrained": {"image_size": 64, "window_size": 4, "pretrained_window_sizes": [0, 0, 0, 0]},
    # window 8, trained 64: stage 1 onwards has grid <= window (window = grid, no shift).
    "window8": {"image_size": 64, "window_size": 8, "pretrained_window_sizes": [0, 0, 0, 0]},
    # window 6, trained 96: other sizes pad the shifted stages 0 and 1 (16 -> 18, 8 -> 12 at 64x64).
    "window6": {"image_size": 96, "window_size": 6, "pretrained_window_sizes": [5, 5, 0, 0]},
}
SIZES = [(96, 64), (64, 128), (128, 128), (32, 32), (64, 96)]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random: 1-D around +-0.5, matrices ~ 1/sqrt(fan_in), logit scales around
    log(10), the cpb MLP large enough that its bias moves the softmax."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("logit_scale"):
                p.copy_(math.log(10) + 0.3 * r)
            elif "continuous_position_bias_mlp.0" in name:
                p.copy_(r)
            elif "continuous_position_bias_mlp.2" in name:
                p.copy_(3 * r / math.sqrt(p.shape[1]))
            elif p.ndim == 1:
                p.copy_(0.5 * r)
            else:
                p.copy_(r / math.sqrt(p[0].numel()))


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' Swinv2Backbone names -> ours, written independently of the module."""
    subs = [
        (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
        (r"^embeddings\.norm\.", "patch_embed.norm."),
        (r"^encoder\.layers\.(\d+)\.downsample\.", r"stages.\1.merge."),
        (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.", r"stages.\1.blocks.\2."),
        (r"attention\.self\.query\.bias$", "attn.q_bias"),
        (r"attention\.self\.value\.bias$", "attn.v_bias"),
        (r"attention\.self\.logit_scale$", "attn.logit_scale"),
        (r"attention\.self\.continuous_position_bias_mlp\.0\.", "attn.cpb.fc1."),
        (r"attention\.self\.continuous_position_bias_mlp\.2\.", "attn.cpb.fc2."),
        (r"attention\.output\.dense\.", "attn.proj."),
        (r"layernorm_before\.", "norm1."),
        (r"layernorm_after\.", "norm2."),
        (r"intermediate\.dense\.", "mlp.fc1."),
        (r"(blocks\.\d+\.)output\.dense\.", r"\1mlp.fc2."),
    ]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        qkv = re.match(r"(.*)attention\.self\.(query|key|value)\.weight$", key)
        if qkv:
            if qkv[2] == "query":
                stem = qkv[1]
                parts = [state[f"{stem}attention.self.{n}.weight"] for n in ("query", "key", "value")]
                key, value = f"{stem}attn.qkv.weight", torch.cat(parts)
            else:
                continue
        for pattern, repl in subs:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


_BUILT: dict[str, tuple] = {}


def _pair(case: str):
    """(transformers model, ours) with the same random weights, eval mode; built once per case."""
    if case not in _BUILT:
        hf_cfg = transformers.Swinv2Config(patch_size=4, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4],
                                           out_features=STAGES, **CASES[case])
        ref = transformers.Swinv2Backbone(hf_cfg).eval()
        _randomise(ref, seed=sorted(CASES).index(case))
        ours = Swinv2Backbone(parse_swinv2(hf_cfg.to_dict())).eval()
        ours.load_state_dict(_rename(ref.state_dict()), strict=True)
        _BUILT[case] = (ref, ours)
    return _BUILT[case]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _run(ref, ours, size, seed=0):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        theirs = ref(x).feature_maps
        mine, grid = ours.forward_intermediates(x, (0, 1, 2, 3))
    return theirs, mine, grid


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_dict_keys_match_renamed_transformers(case):
    ref, ours = _pair(case)
    assert sorted(ours.state_dict()) == sorted(_rename(ref.state_dict()))
    assert not any(True for _ in ours.buffers())


@pytest.mark.parametrize("size", ["trained", *SIZES], ids=str)
@pytest.mark.parametrize("case", sorted(CASES))
def test_feature_maps_match_transformers(case, size):
    ref, ours = _pair(case)
    if size == "trained":
        size = parse_swinv2(ref.config.to_dict()).image_size
    theirs, mine, grid = _run(ref, ours, size)
    assert grid == (size[0] // 4, size[1] // 4)
    assert len(mine) == 4
    for i, (a, b) in enumerate(zip(mine, theirs)):
        assert a.shape == b.shape == (2, 16 * 2**i, size[0] // 4 // 2**i, size[1] // 4 // 2**i)
        assert _rel(a, b) <= 1e-5, (case, size, i, _rel(a, b))


def test_stops_after_deepest_requested_stage():
    ref, ours = _pair("pretrained")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        few, _ = ours.forward_intermediates(x, (1,))
        theirs = ref(x).feature_maps
    assert len(few) == 1 and _rel(few[0], theirs[1]) <= 1e-5
    called = []
    handle = ours.stages[2].register_forward_pre_hook(lambda *a: called.append(1))
    try:
        with torch.no_grad():
            ours.forward_intermediates(x, (0, 1))
    finally:
        handle.remove()
    assert not called


@pytest.mark.parametrize("mutation", ["no_shift", "window_not_pretrained"])
def test_comparison_is_sensitive(mutation):
    """Dropping the shift, or scaling offsets by w-1 instead of pw-1, must move the output far
    beyond the tolerance: the parity test above would catch either mistake."""
    ref, ours = _pair("pretrained")
    stages = ours.stages[:2] if mutation == "no_shift" else ours.stages
    attr = "shift" if mutation == "no_shift" else "pretrained_window"
    saved = [getattr(s, attr) for s in stages]
    try:
        for s in stages:
            setattr(s, attr, 0)
        theirs, mine, _ = _run(ref, ours, (64, 64))
    finally:
        for s, v in zip(stages, saved):
            setattr(s, attr, v)
    assert max(_rel(a, b) for a, b in zip(mine, theirs)) > 1e-3
