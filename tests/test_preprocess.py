"""Preprocessing against OpenCV (the original scripts' reader and resizer) and the original's sizing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpt_cli.pipeline.images import decode
from dpt_cli.pipeline.postprocess import depth_to_size, labels_to_size
from dpt_cli.pipeline.preprocess import Preprocess, original
from dpt_cli.pipeline.resample import resize

SAMPLES = sorted((Path(__file__).parents[1] / "samples").glob("*.*[gG]"))
NET_TOL = 2e-6  # on the normalised network input (range -1..1)


def original_size(height: int, width: int, net: int) -> tuple[int, int]:
    """The isl-org Resize(keep_aspect_ratio=True, ensure_multiple_of=32, resize_method="minimal")."""
    scale_h, scale_w = net / height, net / width
    if abs(1 - scale_w) < abs(1 - scale_h):
        scale_h = scale_w
    else:
        scale_w = scale_h
    return int(np.round(scale_h * height / 32) * 32), int(np.round(scale_w * width / 32) * 32)


def opencv_input(path: Path, net: int) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) / 255.0
    h, w = original_size(*img.shape[:2], net)
    img = cv2.resize(img.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return ((img - 0.5) / 0.5).transpose(2, 0, 1)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("task, net", [("depth", 384), ("segmentation", 480)])
def test_network_input_matches_opencv(path, task, net):
    ours = original(task)(decode(path)).numpy()
    want = opencv_input(path, net)
    assert ours.shape == want.shape
    assert np.abs(ours - want).max() <= NET_TOL


@pytest.mark.parametrize(
    "size, want",
    [
        ((384, 400), (384, 384)),  # 400/32 = 12.5 rounds half to even: 12
        ((384, 432), (384, 448)),  # 13.5 -> 14
        ((768, 1024), (384, 512)),  # the scale closer to 1 (0.5 for the height) wins for both sides
        ((300, 451), (256, 384)),
        ((4000, 10), (384, 32)),  # the original would give width 0 and crash; one multiple is the floor
    ],
)
def test_network_size(size, want):
    assert original("depth").network_size(*size) == want


@pytest.mark.parametrize("size", [(400, 600), (1000, 700), (100, 130)])
def test_network_size_agrees_with_original_rule(size):
    assert original("depth").network_size(*size) == original_size(*size, 384)


def test_no_keep_aspect_squashes():
    assert Preprocess(size=(352, 1216), keep_aspect=False).network_size(375, 1242) == (352, 1216)


@pytest.mark.parametrize("src, dst", [((400, 600), (384, 576)), ((100, 130), (288, 384)), ((50, 70), (1000, 700))])
@pytest.mark.parametrize("cubic", [True, False])
def test_resize_matches_opencv(src, dst, cubic):
    img = np.random.default_rng(0).random((*src, 3), dtype=np.float32)
    want = cv2.resize(img, dst[::-1], interpolation=cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR)
    got = resize(torch.from_numpy(img).permute(2, 0, 1), dst, cubic=cubic).permute(1, 2, 0).numpy()
    assert np.abs(got - want).max() <= 1e-6


def test_depth_upsampling_is_exact_bicubic():
    pred = torch.rand(48, 64)
    want = F.interpolate(pred.double()[None, None], size=(333, 500), mode="bicubic", align_corners=False)[0, 0]
    assert np.abs(depth_to_size(pred, (333, 500)) - want.numpy()).max() <= 1e-6


def test_labels_tiled_equal_untiled(monkeypatch):
    logits = torch.randn(7, 40, 30)
    want = F.interpolate(logits.double()[None], size=(97, 71), mode="bicubic", align_corners=False)[0].argmax(0).numpy()
    import dpt_cli.pipeline.postprocess as post

    from dpt_cli.pipeline.resample import tile_bytes

    five_rows = tile_bytes(7, (40, 30), (97, 71), 5, 71, finish_bytes=post.ARGMAX_BYTES + 2)
    monkeypatch.setattr(post, "TILE_BYTES", five_rows)
    monkeypatch.setattr(post, "TILE_TARGET", None)
    assert post.tile_plan(logits, (97, 71), post.ARGMAX_BYTES + 2) == (5, 71)
    got = labels_to_size(logits, (97, 71))
    assert got.dtype == np.uint8 and (got == want).mean() >= 0.999
