"""`dpt convert`: fake original checkpoints (every release layout) to folders dpt and transformers load."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import DPTForDepthEstimation, DPTForSemanticSegmentation

from dpt_cli.weights import load_model
from dpt_cli.weights.convert import convert
from isl_org import LAYOUTS, expected_transformers_state, fake_checkpoint
from reference import reference_output, rel_err


def dpt(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dpt_cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_converted_folder_matches_source_and_transformers(originals, tmp_path, layout):
    src = originals(layout)
    out = tmp_path / "out"
    report = convert(src, out)
    hybrid = "hybrid" in layout
    assert report.skipped == ["pretrained.model.head.bias", "pretrained.model.head.weight"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "conversion.json", "model.safetensors", "preprocessor_config.json"]

    # (b) each converted tensor equals the source tensor it came from (q/k/v split included)
    written = load_file(out / "model.safetensors")
    want = expected_transformers_state(torch.load(src, weights_only=True), hybrid)
    assert written.keys() == want.keys()
    for key, tensor in want.items():
        assert torch.equal(written[key], tensor), key

    # (a) our model from the folder equals transformers' from the folder
    seg = "ade20k" in layout
    cls = DPTForSemanticSegmentation if seg else DPTForDepthEstimation
    theirs = cls.from_pretrained(out).eval()
    ours = load_model(out)
    size = 384 if hybrid else 64  # transformers' hybrid runs only at its image_size
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert rel_err(ours(x), reference_output(theirs, x)) <= 1e-4
    config = json.loads((out / "config.json").read_text())
    if seg:
        assert len(config["id2label"]) == 150 and config["id2label"]["0"] == "wall"
    assert config["layer_norm_eps"] == 1e-6
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert sha in (out / "README.md").read_text()
    assert json.loads((out / "conversion.json").read_text())["source_sha256"] == sha


def test_wrapped_checkpoint_is_unwrapped(originals, tmp_path):
    state = torch.load(originals("dpt_hybrid-ade20k"), weights_only=True)
    wrapped = tmp_path / "dpt_hybrid-ade20k_wrapped.pt"
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}, wrapped)
    convert(wrapped, tmp_path / "a")
    convert(originals("dpt_hybrid-ade20k"), tmp_path / "b")
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _renamed(src, tmp_path, name):
    target = tmp_path / name
    os.link(src, target)
    return target


def test_release_hash_is_checked(originals, tmp_path):
    src = originals("dpt_hybrid-midas")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()

    good = _renamed(src, tmp_path, f"dpt_hybrid-midas-{sha[:8]}.pt")
    done = dpt("convert", str(good), "-o", str(tmp_path / "good"))
    assert done.returncode == 0, done.stderr
    assert f"sha256     {sha}  (matches the release hash)" in done.stdout

    bad = _renamed(src, tmp_path, "dpt_hybrid-midas-501f0c75.pt")
    done = dpt("convert", str(bad), "-o", str(tmp_path / "bad"))
    assert done.returncode == 1
    assert f"SHA-256 {sha} does not start with the release hash 501f0c75" in done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "bad").exists()

    done = dpt("convert", str(bad), "-o", str(tmp_path / "bad"), "--no-verify")
    assert done.returncode == 0, done.stderr
    assert f"sha256     {sha}\n" in done.stdout


@pytest.mark.parametrize(
    "name, variant, scale, size",
    [
        ("dpt_hybrid_kitti-cb926ef4.pt", "auto", 0.00006016, {"height": 352, "width": 1216}),
        ("dpt_hybrid_nyu-2ce69ec7.pt", "auto", 0.000305, {"height": 480, "width": 640}),
        ("my_model.pt", "nyu", 0.000305, {"height": 480, "width": 640}),
        ("my_model.pt", "auto", None, {"height": 384, "width": 384}),
    ],
)
def test_metric_variants(originals, tmp_path, name, variant, scale, size):
    src = _renamed(originals("dpt_hybrid-midas"), tmp_path, name)
    report = convert(src, tmp_path / "out", variant=variant, verify=False)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config.get("depth_scale") == scale and config.get("invert_depth", False) == (scale is not None)
    assert json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())["size"] == size
    if scale is not None:  # metres: 1 / max(scale * x + shift, 1e-8) of the relative output
        x = torch.randn(1, 3, 64, 64)
        metric, relative = load_model(tmp_path / "out"), load_model(tmp_path / "out")
        relative.config = relative.config.replace(depth_scale=None, depth_shift=None, invert_depth=False)
        with torch.no_grad():
            want = 1 / (scale * relative(x) + report.config.depth_shift).clamp(min=1e-8)
            assert rel_err(metric(x), want) <= 1e-5


def test_variant_help_and_mismatch(originals, tmp_path):
    done = dpt("convert", "--help")
    assert all(v in done.stdout for v in ("relative", "kitti", "nyu", "ade20k"))
    done = dpt("convert", str(originals("dpt_large-ade20k")), "-o", str(tmp_path / "x"), "--variant", "kitti")
    assert done.returncode == 2 and "for depth models" in done.stderr and not (tmp_path / "x").exists()
    done = dpt("convert", str(originals("dpt_large-ade20k")), "-o", str(tmp_path / "x"), "--variant", "zzz")
    assert done.returncode == 2 and "presets: auto, relative, kitti, nyu, ade20k" in done.stderr


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    evil = tmp_path / "dpt_large-midas.pt"
    torch.save({"model": _Evil(), "optimizer": {}}, evil)
    done = dpt("convert", str(evil), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 1
    assert "refused" in done.stderr and "arbitrary code" in done.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["truncated", "text", "unrelated", "missing_key"])
def test_bad_sources_fail_cleanly(originals, tmp_path, kind):
    src = tmp_path / "model.pt"
    if kind == "truncated":
        data = originals("dpt_hybrid-midas").read_bytes()
        src.write_bytes(data[: len(data) // 2])
        message = "not a readable PyTorch checkpoint"
    elif kind == "text":
        src.write_text("hello, I am not a checkpoint\n")
        message = "not a readable PyTorch checkpoint"
    elif kind == "unrelated":
        torch.save({"conv.weight": torch.zeros(3, 3)}, src)
        message = "not an isl-org DPT checkpoint"
    else:
        state = fake_checkpoint("dpt_hybrid-midas")
        del state["scratch.refinenet2.out_conv.bias"]
        torch.save(state, src)
        message = "missing key(s): neck.fusion.1.out_conv.bias"
    done = dpt("convert", str(src), "-o", str(tmp_path / "out"))
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_existing_folder_needs_force(originals, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = dpt("convert", str(originals("dpt_hybrid-midas")), "-o", str(out))
    assert done.returncode == 2 and "--force" in done.stderr
    assert (out / "keep.txt").read_text() == "mine"
    done = dpt("convert", str(originals("dpt_hybrid-midas")), "-o", str(out), "--force")
    assert done.returncode == 2 and "--force replaces only a folder written by dpt convert" in done.stderr
    assert (out / "keep.txt").read_text() == "mine"  # not a folder dpt wrote: --force leaves it alone
    (out / "keep.txt").unlink()
    done = dpt("convert", str(originals("dpt_hybrid-midas")), "-o", str(out), "--force", "--dtype", "float16")
    assert done.returncode == 0, done.stderr
    assert load_file(out / "model.safetensors")["dpt.layernorm.weight"].dtype == torch.float16
    assert load_model(out).config.task == "depth"
