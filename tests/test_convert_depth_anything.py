"""`dpt convert` for Depth Anything V2 (relative, metric) and V1: fake originals from the key manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from depth_anything import STEMS, checkpoint_name, expected_transformers_state, fake_checkpoint, meta_checkpoint, original_reference
from depth_anything import transformers_config
from dpt_cli.errors import UsageError
from dpt_cli.weights import load_model
from dpt_cli.weights.convert import _detect, convert
from dpt_cli.weights.load import model_from_state
from dpt_cli.weights.transformers_layout import table_for
from reference import rel_err

TOL = 1e-4


@pytest.mark.parametrize("stem", sorted(STEMS))
def test_every_release_converts_key_for_key(stem):
    state = meta_checkpoint(stem)
    config, variant, table, skip = _detect(state, Path(checkpoint_name(stem)), "auto")
    model = model_from_state(config, state, table, skip)
    written = table_for(config).to_foreign(model.state_dict())
    want = expected_transformers_state(state, stem)
    assert {k: tuple(v.shape) for k, v in written.items()} == {k: tuple(v.shape) for k, v in want.items()}
    theirs = transformers_config(stem)
    ours = config.to_dict()
    assert ours["depth_estimation_type"] == theirs.get("depth_estimation_type", "relative")
    assert ours.get("max_depth") == theirs.get("max_depth")
    assert ours["backbone_config"]["out_features"] == theirs["backbone_config"]["out_features"]
    for key in ("neck_hidden_sizes", "fusion_hidden_size", "reassemble_hidden_size"):
        assert ours[key] == theirs[key], key


@pytest.fixture(scope="module")
def vits(tmp_path_factory):
    path = tmp_path_factory.mktemp("da") / "depth_anything_v2_vits.pth"
    torch.save(fake_checkpoint("depth_anything_v2_vits"), path)
    return path


def test_converted_folder_matches_source_and_the_original(vits, tmp_path):
    out = tmp_path / "out"
    report = convert(vits, out)
    original = torch.load(vits, weights_only=True)
    written = load_file(out / "model.safetensors")
    want = expected_transformers_state(original, "depth_anything_v2_vits")
    assert written.keys() == want.keys() and report.skipped == []
    for key, tensor in want.items():
        assert torch.equal(written[key], tensor), key

    # 518 x 700 (not the trained square): ours equals transformers with the original position rule
    # and differs from transformers as shipped by the documented ~5 % of the output range
    from transformers import DepthAnythingForDepthEstimation

    ours = load_model(out)
    reference = original_reference(original, "depth_anything_v2_vits")
    shipped = DepthAnythingForDepthEstimation.from_pretrained(out).eval()
    x = torch.randn(1, 3, 518, 700)
    with torch.no_grad():
        got, want_out, theirs = ours(x), reference(pixel_values=x).predicted_depth, shipped(pixel_values=x).predicted_depth
    assert rel_err(got, want_out) <= TOL
    gap = ((got - theirs).abs().max() / (want_out.max() - want_out.min())).item()
    assert 0.02 < gap < 0.15, gap
    sha = hashlib.sha256(vits.read_bytes()).hexdigest()
    assert json.loads((out / "conversion.json").read_text())["source_sha256"] == sha
    prep = json.loads((out / "preprocessor_config.json").read_text())
    assert prep["ensure_multiple_of"] == 14 and prep["image_mean"] == [0.485, 0.456, 0.406]


def test_renamed_files_need_the_variant(vits, tmp_path):
    renamed = tmp_path / "weights.pth"
    renamed.symlink_to(vits)
    with pytest.raises(UsageError, match="pass --variant \\(da2, da2-metric-indoor, da2-metric-outdoor, da1\\)"):
        convert(renamed, tmp_path / "a")
    report = convert(renamed, tmp_path / "b", variant="da2-metric-outdoor")
    assert report.config.is_metric and report.config.max_depth == 80
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["depth_estimation_type"] == "metric" and config["max_depth"] == 80
    wrong = tmp_path / "depth_anything_v2_vitb.pth"
    wrong.symlink_to(vits)
    with pytest.raises(UsageError, match="says ViT-B \\(768 wide\\), but its encoder is 384 wide"):
        convert(wrong, tmp_path / "c")


def test_converted_folder_runs_with_the_original_preprocessing(vits, tmp_path):
    from cli import run_cli
    from test_cli_depth import photo

    assert run_cli("convert", vits, "-o", tmp_path / "m", "-q").code == 0
    result = run_cli("depth", photo(tmp_path / "p.png", (45, 70)), "-o", tmp_path / "d.npy", "-m", tmp_path / "m")
    assert result.code == 0, result.err
    # the original's 'lower bound' at 518 in multiples of 14: 45 x 70 -> 518 x 812 (the processor
    # config's 'closer to 1' rule, which transformers follows, would give 336 x 518)
    assert json.loads((tmp_path / "dpt-run.json").read_text())["files"][0]["network_size"] == [518, 812]


@pytest.mark.parametrize("edit", ["cls_0d", "pos_1d"])
def test_malformed_depth_anything_files_are_not_checkpoints(tmp_path, edit):
    from dpt_cli.weights.isl_org_layout import NotADPTCheckpoint

    # every key at its shape, stored as one zero each (expanded views): nothing large is written
    state = {k: torch.zeros(()).expand(v.shape) for k, v in meta_checkpoint("depth_anything_v2_vits").items()}
    if edit == "cls_0d":
        state["pretrained.cls_token"] = torch.zeros(())
    else:
        state["pretrained.pos_embed"] = torch.zeros(5)
    src = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(state, src)
    with pytest.raises(NotADPTCheckpoint):
        convert(src, tmp_path / "out")
