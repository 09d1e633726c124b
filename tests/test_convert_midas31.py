"""`dpt convert` for the six MiDaS v3.1 releases: fake originals built from the key manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import DPTForDepthEstimation

from dpt_cli.errors import UsageError
from dpt_cli.weights import load_model
from dpt_cli.weights.convert import _detect, convert
from dpt_cli.weights.load import model_from_state
from dpt_cli.weights.transformers_layout import table_for
from midas31 import RELEASES, expected_transformers_state, fake_checkpoint, image_size, meta_checkpoint, transformers_config
from reference import rel_err

TOL = 1e-4


@pytest.mark.parametrize("stem", RELEASES)
def test_every_release_converts_key_for_key(stem):
    """Every release's keys and shapes (on the meta device: no memory) -> exactly the transformers
    layout an independent rename of the manifest gives, with the release's config."""
    state = meta_checkpoint(stem)
    config, variant, table, skip = _detect(state, Path(f"{stem}.pt"), "auto")
    model = model_from_state(config, state, table, skip)
    written = table_for(config).to_foreign(model.state_dict())
    want = expected_transformers_state(state, stem)
    assert {k: tuple(v.shape) for k, v in written.items()} == {k: tuple(v.shape) for k, v in want.items()}
    theirs = transformers_config(stem)
    ours = config.to_dict()
    for key, value in theirs["backbone_config"].items():
        assert ours["backbone_config"][key] == value, key
    assert ours["neck_hidden_sizes"] == theirs["neck_hidden_sizes"]
    assert variant.name == stem.removeprefix("dpt_") and variant.size == (image_size(stem),) * 2
    assert variant.keep_aspect == ("beit" in stem)


@pytest.fixture(scope="module")
def small_originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("midas31")
    paths = {}
    for stem in ("dpt_swin2_tiny_256", "dpt_beit_base_384"):
        paths[stem] = folder / f"{stem}.pt"
        torch.save(fake_checkpoint(stem), paths[stem])
    return paths


@pytest.mark.parametrize("stem, sizes", [("dpt_swin2_tiny_256", [(256, 256)]), ("dpt_beit_base_384", [(384, 384), (192, 256)])])
def test_converted_folder_matches_source_and_transformers(small_originals, tmp_path, stem, sizes):
    src = small_originals[stem]
    out = tmp_path / "out"
    report = convert(src, out)
    original = torch.load(src, weights_only=True)
    beit = "beit" in stem
    dropped = ("head.", "fc_norm.", "relative_position_index") if beit else ("head.", "model.norm.", "attn_mask")
    assert report.skipped == sorted(k for k in original if any(d in k for d in dropped))

    # every written tensor equals its source through the independent rename
    written = load_file(out / "model.safetensors")
    want = expected_transformers_state(original, stem)
    assert written.keys() == want.keys()
    for key, tensor in want.items():
        assert torch.equal(written[key], tensor), key

    # transformers and dpt load the folder and compute the same depth
    theirs = DPTForDepthEstimation.from_pretrained(out).eval()
    ours = load_model(out)
    for size in sizes:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert rel_err(ours(x), theirs(pixel_values=x).predicted_depth) <= TOL

    config = json.loads((out / "config.json").read_text())
    assert config["backbone_config"]["layer_norm_eps"] == (1e-6 if beit else 1e-5)
    prep = json.loads((out / "preprocessor_config.json").read_text())
    assert prep["keep_aspect_ratio"] is beit and prep["size"] == {"height": image_size(stem), "width": image_size(stem)}
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert json.loads((out / "conversion.json").read_text())["source_sha256"] == sha == report.sha256
    assert "MiDaS v3.1" in (out / "README.md").read_text()


def test_renamed_swin_needs_the_release(small_originals, tmp_path):
    renamed = tmp_path / "my_model.pt"
    renamed.symlink_to(small_originals["dpt_swin2_tiny_256"])
    with pytest.raises(UsageError, match="pretrained window sizes .* --variant"):
        convert(renamed, tmp_path / "a")
    with pytest.raises(UsageError, match="swin2_base_384 is 128 wide, but the file's backbone is 96 wide"):
        convert(renamed, tmp_path / "b", variant="swin2_base_384")
    with pytest.raises(UsageError, match="beit_base_384 is a beit release, but the file holds a swinv2 model"):
        convert(renamed, tmp_path / "c", variant="beit_base_384")
    report = convert(renamed, tmp_path / "d", variant="swin2_tiny_256")
    assert report.variant == "swin2_tiny_256"
    config = json.loads((tmp_path / "d" / "config.json").read_text())["backbone_config"]
    assert config["pretrained_window_sizes"] == [0, 0, 0, 0] and config["window_size"] == 16


def test_cli_prints_the_hash_and_asks_for_the_variant(small_originals, tmp_path):
    from cli import run_cli

    src = small_originals["dpt_swin2_tiny_256"]
    result = run_cli("convert", src, "-o", tmp_path / "ok")
    assert result.code == 0, result.err
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert f"sha256     {sha}" in result.out and "model      swinv2 depth, variant swin2_tiny_256" in result.out
    renamed = tmp_path / "weights.pt"
    renamed.symlink_to(src)
    result = run_cli("convert", renamed, "-o", tmp_path / "no")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "pass --variant (swin2_large_384, swin2_base_384, swin2_tiny_256)" in result.err
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("edit", ["table_1d", "table_rows", "patch_3d"])
def test_malformed_midas31_files_are_not_checkpoints(tmp_path, edit):
    from dpt_cli.weights.isl_org_layout import NotADPTCheckpoint

    # every key at its shape, stored as one zero each (expanded views): nothing large is written
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in meta_checkpoint("dpt_beit_base_384").items()}
    key = "pretrained.model.blocks.0.attn.relative_position_bias_table"
    if edit == "table_1d":
        state[key] = torch.zeros(12)
    elif edit == "table_rows":
        state[key] = torch.zeros(2, 12)
    else:
        state["pretrained.model.patch_embed.proj.weight"] = torch.zeros(768, 3, 16)
    src = tmp_path / "dpt_beit_base_384.pt"
    torch.save(state, src)
    with pytest.raises(NotADPTCheckpoint, match="not a MiDaS v3.1 .*layout"):
        convert(src, tmp_path / "out")
