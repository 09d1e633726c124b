"""`dpt segment`: palette label maps equal to the reference argmax, overlays, manifest classes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cli import run_cli
from dpt_cli import ade20k
from reference import reference_any_size
from test_cli_depth import photo
from test_preprocess import original_size


def reference_labels(model, path) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    h, w = original_size(*img.shape[:2], 480)
    x = (cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC) - 0.5) / 0.5
    logits = reference_any_size(model, torch.from_numpy(x.transpose(2, 0, 1))[None])
    up = F.interpolate(logits.double(), size=img.shape[:2], mode="bicubic", align_corners=False)
    return up[0].argmax(0).numpy()


def test_label_map_is_a_palette_png_of_class_ids(saved_models, tmp_path):
    folder, ref = saved_models("ade")
    src = photo(tmp_path / "room.jpg", (60, 90))
    result = run_cli("segment", src, "-o", tmp_path / "labels.png", "-m", folder, "--overlay", "--alpha", "0.3")
    assert result.code == 0, result.err
    labels = Image.open(tmp_path / "labels.png")
    assert labels.mode == "P" and labels.size == (90, 60)
    assert labels.getpalette()[: 150 * 3] == [c for rgb in ade20k.palette() for c in rgb]
    got = np.asarray(labels)
    want = reference_labels(ref, src)
    assert (got == want).mean() >= 0.999  # ties between near-equal logits may differ in the last bit
    overlay = Image.open(tmp_path / "labels.overlay.png")
    assert overlay.mode == "RGB" and overlay.size == (90, 60)
    manifest = json.loads((tmp_path / "dpt-run.json").read_text())
    entry = manifest["files"][0]
    assert entry["outputs"] == ["labels.png", "labels.overlay.png"]
    classes = entry["classes"]
    assert abs(sum(c["fraction"] for c in classes) - 1) < 1e-4
    ids, counts = np.unique(got, return_counts=True)
    assert {c["id"] for c in classes} == set(ids.tolist())
    assert classes[0]["name"] == ade20k.id2label()[classes[0]["id"]]
    assert classes[0]["fraction"] == round(counts.max() / got.size, 6)
    assert manifest["runs"][-1]["units"] == "class ids (0-based id2label)"


def test_directory_mode_and_wrong_model(saved_models, tmp_path):
    folder, _ = saved_models("seg")
    photo(tmp_path / "in" / "a.png")
    photo(tmp_path / "in" / "b" / "c.png", (50, 40))
    result = run_cli("segment", tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", folder, "--overlay")
    assert result.code == 0, result.err
    assert Image.open(tmp_path / "out" / "b" / "c.png").size == (40, 50)
    assert (tmp_path / "out" / "b" / "c.overlay.png").exists()
    depth_folder, _ = saved_models("large_shaped")
    result = run_cli("segment", tmp_path / "in", "-o", tmp_path / "x", "-m", depth_folder)
    assert result.code == 2 and "use `dpt depth`" in result.err
    result = run_cli("segment", tmp_path / "in" / "a.png", "-o", tmp_path / "x.jpg", "-m", folder)
    assert result.code == 2 and "label maps as .png" in result.err
