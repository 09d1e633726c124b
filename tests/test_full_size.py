"""One parity check at the real Intel/dpt-large size (344M parameters, 384x384 input)."""

from __future__ import annotations

import torch
from transformers import DPTConfig as HFConfig
from transformers import DPTForDepthEstimation

from dpt_cli.weights import load_model
from reference import randomize, reference_output, rel_err

# Intel/dpt-large's config.json (see ../shared/reference/huggingface_layout.md).
DPT_LARGE = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    image_size=384,
    patch_size=16,
    backbone_out_indices=[5, 11, 17, 23],
    neck_hidden_sizes=[256, 512, 1024, 1024],
    reassemble_factors=[4, 2, 1, 0.5],
    fusion_hidden_size=256,
    readout_type="project",
    layer_norm_eps=1e-12,
    qkv_bias=True,
)


def test_dpt_large_matches_transformers(tmp_path):
    ref = randomize(DPTForDepthEstimation(HFConfig(**DPT_LARGE)))
    # isl-org's dpt_large-midas has 344,055,465 parameters, of which the unused ImageNet classifier
    # (1000 x 1024 + 1000) is not part of the transformers layout.
    assert sum(p.numel() for p in ref.parameters()) == 344_055_465 - 1_025_000
    ref.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        got = ours(x)
    assert got.shape == (1, 384, 384)
    assert rel_err(got, reference_output(ref, x)) <= 1e-4
