"""`dpt depth` through real invocations on tiny random models: formats, sizes, names, exit codes."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cli import run_cli
from reference import reference_any_size
from test_preprocess import original_size

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")


@pytest.fixture
def depth_model(saved_models):
    return saved_models("large_shaped")


def photo(path, size=(45, 70), seed=0, mode="RGB", **params):
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).convert(mode).save(path, **params)
    return path


def reference_depth(model, path) -> np.ndarray:
    """The original pipeline, independently: OpenCV read + INTER_CUBIC, transformers modules, bicubic back."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    h, w = original_size(*img.shape[:2], 384)
    x = (cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC) - 0.5) / 0.5
    pred = reference_any_size(model, torch.from_numpy(x.transpose(2, 0, 1))[None])
    return F.interpolate(pred[None].double(), size=img.shape[:2], mode="bicubic", align_corners=False)[0, 0].numpy()


def test_raw_depth_matches_the_original_pipeline(depth_model, tmp_path):
    folder, ref = depth_model
    src = os.path.join(SAMPLES, "coffee.png")
    result = run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", folder)
    assert result.code == 0, result.err
    got = np.load(tmp_path / "d.npy")
    want = reference_depth(ref, src)
    assert got.shape == (400, 600) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_single_file_formats(depth_model, tmp_path):
    folder, _ = depth_model
    src = photo(tmp_path / "in.png")
    for name in ("d.npy", "d.png", "d8.png", "d.pfm", "d.tiff", "d.jpg", "d.webp", "sbs.jpg"):
        extra = ["--bits", "8"] if name == "d8.png" else ["--side-by-side"] if name == "sbs.jpg" else []
        result = run_cli("depth", src, "-o", tmp_path / name, "-m", folder, *extra)
        assert result.code == 0, (name, result.err)
    raw = np.load(tmp_path / "d.npy")
    lo, hi = float(raw.min()), float(raw.max())
    png16 = Image.open(tmp_path / "d.png")
    assert png16.mode == "I;16" and png16.size == (70, 45)
    assert np.array_equal(np.asarray(png16), ((raw - lo) / (hi - lo) * 65535).astype(np.uint16))
    png8 = Image.open(tmp_path / "d8.png")
    assert png8.mode == "L" and np.asarray(png8).max() == 255 and np.asarray(png8).min() == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.tiff")), raw)
    assert np.array_equal(read_pfm(tmp_path / "d.pfm"), raw)
    for name in ("d.jpg", "d.webp"):
        picture = Image.open(tmp_path / name)
        assert picture.mode == "RGB" and picture.size == (70, 45)
    # --side-by-side adds the picture beside the one named: "also" means also
    assert Image.open(tmp_path / "sbs.jpg").size == (70, 45)
    assert Image.open(tmp_path / "sbs.side-by-side.jpg").size == (140, 45)
    manifest = json.loads((tmp_path / "dpt-run.json").read_text())
    assert manifest["files"][0]["input_size"] == [45, 70]


def read_pfm(path) -> np.ndarray:
    with open(path, "rb") as f:
        assert f.readline() == b"Pf\n"
        width, height = map(int, f.readline().split())
        scale = float(f.readline())
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    return np.flipud(data.reshape(height, width))


def test_directory_formats_names_and_manifest(depth_model, tmp_path):
    folder, _ = depth_model
    src = tmp_path / "in"
    photo(src / "a.jpg", (40, 50))
    photo(src / "a.png", (40, 50), seed=1)  # same stem: a collision
    photo(src / "dir one" / "café über.png", (33, 66))
    photo(src / "dir one" / "deeper" / "x.png", (32, 32))
    out = tmp_path / "out"
    formats = ["-f", "png16", "-f", "png8", "-f", "npy", "-f", "pfm", "-f", "tiff", "-f", "color", "-f", "side-by-side"]
    result = run_cli("depth", src, "-r", "-o", out, "-m", folder, *formats, "--colormap", "magma")
    assert result.code == 0, result.err
    for stem, size in [("a.jpg", (40, 50)), ("a.png", (40, 50)), ("dir one/café über", (33, 66)), ("dir one/deeper/x", (32, 32))]:
        assert Image.open(out / f"{stem}.png").size == size[::-1]
        assert Image.open(out / f"{stem}.8bit.png").size == size[::-1]
        assert np.load(out / f"{stem}.npy").shape == size
        assert read_pfm(out / f"{stem}.pfm").shape == size
        assert Image.open(out / f"{stem}.tiff").size == size[::-1]
        assert Image.open(out / f"{stem}.color.png").size == size[::-1]
        assert Image.open(out / f"{stem}.side-by-side.png").size == (2 * size[1], size[0])
    manifest = json.loads((out / "dpt-run.json").read_text())
    assert manifest["runs"][-1]["units"] == "inverse relative depth (larger is nearer)"
    assert manifest["runs"][-1]["counts"] == {"ok": 4, "skipped": 0, "failed": 0, "interrupted": 0}
    first = manifest["files"][0]
    assert first["status"] == "ok" and first["network_size"] == list(original_size(40, 50, 384)) and first["min"] < first["max"]
    assert len(first["outputs"]) == 7


def test_top_level_only_without_recursive(depth_model, tmp_path):
    folder, _ = depth_model
    photo(tmp_path / "in" / "top.png")
    photo(tmp_path / "in" / "sub" / "deep.png")
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", folder)
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "top.png").exists() and not (tmp_path / "out" / "sub").exists()


def test_stdin_list_and_globs(depth_model, tmp_path):
    folder, _ = depth_model
    paths = [photo(tmp_path / "in" / f"p{i}.png", seed=i) for i in range(3)]
    result = run_cli("depth", "-", "-o", tmp_path / "out", "-m", folder, stdin="\n".join(map(str, paths[:2])) + "\n")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["p0.png", "p1.png"]
    result = run_cli("depth", str(tmp_path / "in" / "p[12].png"), "-o", tmp_path / "glob", "-m", folder)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "glob").glob("*.png")) == ["p1.png", "p2.png"]


def test_exif_rotated_input_gives_upright_size(depth_model, tmp_path):
    folder, _ = depth_model
    exif = Image.Exif()
    exif[0x0112] = 6
    src = photo(tmp_path / "r.jpg", (40, 80), exif=exif)
    result = run_cli("depth", src, "-o", tmp_path / "r.npy", "-m", folder)
    assert result.code == 0, result.err
    assert np.load(tmp_path / "r.npy").shape == (80, 40)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_every_image_mode(depth_model, tmp_path, mode):
    folder, _ = depth_model
    if mode == "I;16":
        src = tmp_path / "x.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 65536, (30, 40), dtype=np.uint16)).save(src)
    else:
        src = photo(tmp_path / ("x.jpg" if mode == "CMYK" else "x.png"), (30, 40), mode=mode)
    result = run_cli("depth", src, "-o", tmp_path / "x.npy", "-m", folder)
    assert result.code == 0, result.err
    assert np.load(tmp_path / "x.npy").shape == (30, 40)


def test_bad_inputs_are_skipped_and_reported(depth_model, tmp_path):
    folder, _ = depth_model
    src = tmp_path / "in"
    photo(src / "good.png")
    (src / "zero.png").write_bytes(b"")
    (src / "text.jpg").write_text("not an image")
    good_jpeg = photo(tmp_path / "full.jpg", (64, 64)).read_bytes()
    (src / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 3])
    (src / "folder.png").mkdir()
    big = src / "huge.png"
    Image.new("L", (10000, 9000)).save(big)  # 90 Mpx: over Pillow's limit, tiny on disk
    (src / "notes.txt").write_text("ignored: not an image by name or content")
    result = run_cli("depth", src, "-o", tmp_path / "out", "-m", folder)
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("dpt: ")]
    assert len(errors) == 5, result.err
    for name, problem in [("zero.png", "empty file"), ("text.jpg", "not an image"), ("truncated.jpg", "cannot decode"), ("folder.png", "is a directory"), ("huge.png", "pixel limit")]:
        assert any(name in e and problem in e for e in errors), (name, errors)
    assert (tmp_path / "out" / "good.png").exists()
    manifest = json.loads((tmp_path / "out" / "dpt-run.json").read_text())
    assert manifest["runs"][-1]["counts"]["ok"] == 1 and manifest["runs"][-1]["counts"]["failed"] == 5
    assert "notes" not in json.dumps(manifest)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(depth_model, tmp_path):
    folder, _ = depth_model
    src = photo(tmp_path / "in" / "locked.png")
    src.chmod(0)
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", folder)
    assert result.code == 1 and "permission denied" in result.err


def test_existing_outputs(depth_model, tmp_path):
    folder, _ = depth_model
    photo(tmp_path / "in" / "a.png")
    photo(tmp_path / "in" / "b.png", seed=1)
    args = ("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", folder)
    assert run_cli(*args).code == 0
    before = (tmp_path / "out" / "a.png").stat().st_mtime_ns
    again = run_cli(*args)  # every output exists: a usage error before the model loads
    assert again.code == 2 and "all 2 inputs' outputs already exist" in again.err and "--skip-existing keeps them" in again.err, again.err
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns == before
    (tmp_path / "out" / "b.png").unlink()
    resumed = run_cli(*args, "--skip-existing")
    assert resumed.code == 0, resumed.err
    manifest = json.loads((tmp_path / "out" / "dpt-run.json").read_text())
    assert [(f["status"], f.get("last_attempt", {}).get("status")) for f in manifest["files"]] == [("ok", "skipped"), ("ok", None)]
    assert run_cli(*args, "--overwrite").code == 0
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns != before


def test_range_fixes_normalisation(depth_model, tmp_path):
    folder, _ = depth_model
    src = photo(tmp_path / "in.png")
    assert run_cli("depth", src, "-o", tmp_path / "d.npy", "-m", folder).code == 0
    raw = np.load(tmp_path / "d.npy")
    lo, hi = float(raw.min()), float(raw.max()) * 2
    assert run_cli("depth", src, "-o", tmp_path / "d.png", "-m", folder, "--range", f"{lo}:{hi}").code == 0
    png = np.asarray(Image.open(tmp_path / "d.png"))
    want = (np.clip((raw - lo) / (hi - lo), 0, 1) * 65535).astype(np.uint16)
    assert np.array_equal(png, want) and png.max() < 65535
    manifest = json.loads((tmp_path / "dpt-run.json").read_text())
    assert manifest["files"][-1]["max"] == hi


@pytest.mark.parametrize(
    "args, message",
    [
        (("{empty}", "-o", "{out}"), "no input images"),
        (("{img}", "-o", "{out}", "--bogus"), "No such option"),
        (("{img}", "-o", "{out}", "--device", "cuda"), "not available"),
        (("{img}", "-o", "{out}", "--device", "tpu"), "unknown device"),
        (("{img}", "{img2}", "-o", "{tmp}/one.png"), "names one file but there are 2 inputs"),
        (("{img}", "-o", "{img}"), "is one of the inputs"),
        (("{img}", "-o", "{img2}.d"), "dpt does not write .d files"),
        (("{img}", "-o", "{out}", "--format", "gif"), "is not one of"),
        (("{img}", "-o", "{out}", "--range", "5:1"), "MAX must be greater"),
        (("{img}", "-o", "{out}", "--size", "abc"), "use N or HxW"),
    ],
)
def test_usage_errors_exit_2(depth_model, tmp_path, args, message):
    folder, _ = depth_model
    (tmp_path / "empty").mkdir()
    (tmp_path / "j.png.d").write_text("a file where a directory is expected")
    names = {"empty": tmp_path / "empty", "out": tmp_path / "out", "img": photo(tmp_path / "i.png"),
             "img2": photo(tmp_path / "j.png"), "tmp": tmp_path}
    result = run_cli("depth", *[a.format(**names) for a in args], "-m", folder)
    assert result.code == 2, result.err
    assert message in result.err
    assert "Traceback" not in result.err


def test_unknown_and_uncached_models_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    src = photo(tmp_path / "i.png")
    for model, message in [("nonsense", "not a hub id"), ("Intel/dpt-large", "pass its folder"), (None, "pass its folder")]:
        extra = ["-m", model] if model else []
        result = run_cli("depth", src, "-o", tmp_path / "o.png", *extra)
        assert result.code == 2 and message in result.err, result.err


def test_segmentation_model_for_depth_is_refused(saved_models, tmp_path):
    folder, _ = saved_models("seg")
    result = run_cli("depth", photo(tmp_path / "i.png"), "-o", tmp_path / "o.png", "-m", folder)
    assert result.code == 2 and "use `dpt segment`" in result.err


def test_batches_group_by_size(depth_model, tmp_path):
    folder, _ = depth_model
    for i, size in enumerate([(40, 50), (41, 52), (90, 60), (40, 50), (90, 61)]):
        photo(tmp_path / "in" / f"{i}.png", size, seed=i)
    single = run_cli("depth", tmp_path / "in", "-o", tmp_path / "one", "-m", folder, "-f", "npy")
    batched = run_cli("depth", tmp_path / "in", "-o", tmp_path / "many", "-m", folder, "-f", "npy", "--batch-size", "3")
    assert single.code == batched.code == 0
    for i in range(5):
        a, b = np.load(tmp_path / "one" / f"{i}.npy"), np.load(tmp_path / "many" / f"{i}.npy")
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


def test_quiet_and_plain_progress(depth_model, tmp_path):
    folder, _ = depth_model
    src = photo(tmp_path / "i.png")
    loud = run_cli("depth", src, "-o", tmp_path / "a.png", "-m", folder)
    assert "model " in loud.err and "[1/1]" in loud.err and "done 1, skipped 0, failed 0" in loud.err
    quiet = run_cli("depth", src, "-o", tmp_path / "b.png", "-m", folder, "-q")
    assert quiet.code == 0 and quiet.err == ""


def test_skip_existing_finishes_an_input_whose_outputs_are_partly_written(depth_model, tmp_path):
    folder, _ = depth_model
    photo(tmp_path / "in" / "a.png")
    args = ("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", folder, "-f", "npy", "-f", "png16")
    assert run_cli(*args).code == 0
    kept = (tmp_path / "out" / "a.npy").stat().st_mtime_ns
    (tmp_path / "out" / "a.png").unlink()  # as if killed between the two outputs
    result = run_cli(*args, "--skip-existing")
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "a.png").exists()
    assert (tmp_path / "out" / "a.npy").stat().st_mtime_ns == kept  # existing outputs are left alone
