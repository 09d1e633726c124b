"""Our model against transformers on the same weights and inputs: max|ours - theirs| <= 1e-4 max|theirs|."""

from __future__ import annotations

import pytest
import torch

from dpt_cli.weights import load_model
from reference import VARIANTS, metric_copy, reference_any_size, reference_output, rel_err

TOL = 1e-4


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_square_input_matches_transformers(saved_models, name):
    folder, ref = saved_models(name)
    ours = load_model(folder)
    side = 56 if "dinov2" in name or "depth_anything" in name else 64  # the DINOv2 tiny models' trained size
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        got = ours(x)
    assert rel_err(got, reference_output(ref, x)) <= TOL


@pytest.mark.parametrize("name", ["large_shaped", "hybrid", "seg", "readout_add"])
@pytest.mark.parametrize("size", [(64, 96), (96, 32), (128, 128)])
def test_other_sizes_match_transformers_modules(saved_models, name, size):
    """Non-square and larger inputs: transformers' modules with the grid passed explicitly."""
    folder, ref = saved_models(name)
    ours = load_model(folder)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        got = ours(x)
    assert got.shape[-2:] == size
    assert rel_err(got, reference_any_size(ref, x)) <= TOL


def test_reference_any_size_agrees_with_transformers_forward(saved_models):
    """The composed reference is itself checked against transformers' forward where both run."""
    _, ref = saved_models("hybrid")
    x = torch.randn(1, 3, 64, 64)
    assert rel_err(reference_any_size(ref, x), reference_output(ref, x)) <= 1e-6


def test_metric_conversion(saved_models, tmp_path):
    folder, ref = saved_models("hybrid")
    metric = metric_copy(folder, tmp_path / "metric")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = load_model(metric)(x)
    want = 1.0 / (0.000305 * reference_output(ref, x) + 0.1378).clamp(min=1e-8)
    assert rel_err(got, want) <= TOL


def test_input_size_must_be_multiple_of_32(saved_models):
    folder, _ = saved_models("readout_ignore")
    model = load_model(folder)
    with pytest.raises(ValueError, match=r"100x70 .* nearest valid size is 96x64"):
        model(torch.randn(1, 3, 100, 70))


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_dtype_cast(saved_models, dtype):
    folder, ref = saved_models("readout_add")
    model = load_model(folder, dtype=dtype)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = model(x.to(dtype)).float()
    assert got.dtype == torch.float32 and rel_err(got, reference_output(ref, x)) <= 5e-2


def test_unusual_reassemble_factors_fuse_by_two(tmp_path):
    """DPT fuses by x2 whatever the stages' sizes (the skip is resized instead): only MiDaS v3.1
    follows the next stage's size. With factors [4, 2, 1, 1] the two differ."""
    from reference import TINY_VIT, make_reference

    ref = make_reference(dict(TINY_VIT, reassemble_factors=[4, 2, 1, 1]), seed=2)
    ref.save_pretrained(tmp_path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(load_model(tmp_path)(x), reference_output(ref, x)) <= TOL


def test_metric_fields_never_touch_segmentation_logits(saved_models, tmp_path):
    folder, ref = saved_models("seg")
    odd = metric_copy(folder, tmp_path / "odd", {"depth_scale": 2.0, "depth_shift": 1.0})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(load_model(odd)(x), reference_output(ref, x)) <= TOL
