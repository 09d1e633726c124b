"""The engine's two placements give the same values: the GPU path's logic, run on CPU tensors.

Device placement: uint8 pixels preprocessed as a tensor, results resized back, min/max taken and
PNG maps quantised on the device (here the CPU), then copied. Host placement: the numpy path the
CPU runs. Network inputs, depth maps, quantised maps and label maps must be bitwise equal (the
issue asks for 2e-6 on inputs; same float32 operations in the same order give exact equality).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dpt_cli.pipeline import writers
from dpt_cli.pipeline.engine import Engine, NonFiniteOutput, Settings
from dpt_cli.pipeline.images import decode, decode_image
from dpt_cli.pipeline.postprocess import depth_to_size, quantise_on_device
from dpt_cli.pipeline.preprocess import original
from dpt_cli.pipeline.profile import Profile
from dpt_cli.weights.load import load_model

SAMPLES = sorted((Path(__file__).parents[1] / "samples").glob("*.*[gG]"))


@pytest.mark.parametrize("path", SAMPLES[:2], ids=lambda p: p.name)
def test_device_preprocess_equals_host(path):
    prep = original("depth")
    pixels = decode_image(path).pixels
    assert pixels.dtype == np.uint8
    from_float = prep(decode(path))  # the float path every earlier release took
    assert torch.equal(prep(pixels), from_float)
    assert torch.equal(prep(torch.from_numpy(pixels.copy())), from_float)


@pytest.mark.parametrize("value_range", [None, (0.25, 0.5), (-3.0, 1e-3)])
def test_device_quantise_equals_writers(value_range):
    gen = torch.Generator().manual_seed(0)
    depth = torch.randn(37, 53, generator=gen).cumsum(1) * 3.7
    bounds, maps = quantise_on_device(depth, value_range, (8, 16))
    lo, hi = value_range or (float(depth.min()), float(depth.max()))
    assert (float(bounds[0]), float(bounds[1])) == (lo, hi)
    unit = writers.normalise(depth.numpy(), lo, hi)
    for bits in (8, 16):
        assert np.array_equal(maps[bits].numpy(), writers.quantise(unit, bits).astype(maps[bits].numpy().dtype))


def test_device_quantise_of_a_flat_map_is_zero():
    _, maps = quantise_on_device(torch.full((4, 5), 2.5), None, (16,))
    assert not maps[16].any()


def _engine(folder, task, on_device, formats, batch_size=4, value_range=None):
    model = load_model(folder).eval()
    settings = Settings(task, frozenset(formats), value_range, on_device, batch_size=batch_size)
    prep = original(task, model.config)
    return Engine(model, prep, torch.device("cpu"), torch.float32, settings, Profile(True))


def _photos(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    shapes = [(70, 90), (96, 64), (70, 90), (33, 130)][:n]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def _results(engine, photos):
    jobs = [engine.prepare(p, f"p{i}") for i, p in enumerate(photos)]
    out = []
    for net in dict.fromkeys(j.net for j in jobs):  # one batch per network size, as the runner does
        group = [j for j in jobs if j.net == net]
        out += [fetch() for fetch in engine.infer(group)]
    return out


@pytest.mark.parametrize("formats", [{"png16", "png8"}, {"png16", "npy"}, {"color"}])
def test_depth_results_equal_in_both_placements(saved_models, formats):
    folder, _ = saved_models("readout_add")
    photos = _photos(4)
    host = _results(_engine(folder, "depth", False, formats), photos)
    device = _results(_engine(folder, "depth", True, formats), photos)
    for h, d in zip(host, device):
        assert (d.lo, d.hi) == (h.lo, h.hi)
        for bits in (16, 8):
            assert np.array_equal(d.png(bits), h.png(bits))
        if d.depth is not None:
            assert np.array_equal(d.depth, h.depth)
        assert (d.depth is None) == formats.issubset({"png16", "png8"})


@pytest.mark.parametrize("name", ["depth_anything", "dinov2_dpt"])
def test_dinov2_families_equal_in_both_placements(saved_models, name):
    """The device placement's padding, align_corners resize and crop (DINOv2 families), run on CPU
    tensors: the same numbers as the host path."""
    folder, _ = saved_models(name)
    photos = _photos(4)  # 70 x 90 and 33 x 130 pad on both axes for DPT-DINOv2
    host = _results(_engine(folder, "depth", False, {"npy"}), photos)
    device = _results(_engine(folder, "depth", True, {"npy"}), photos)
    assert sorted(h.depth.shape for h in host) == sorted(p.shape[:2] for p in photos)  # grouped by network size
    for h, d in zip(host, device):
        assert np.array_equal(d.depth, h.depth)


def test_labels_equal_in_both_placements(saved_models):
    folder, _ = saved_models("seg")
    photos = _photos(3)
    host = _results(_engine(folder, "segmentation", False, {"labels"}), photos)
    device = _results(_engine(folder, "segmentation", True, {"labels"}), photos)
    for h, d in zip(host, device):
        assert d.dtype == h.dtype == np.uint8
        assert np.array_equal(d, h)


class _OutOfMemoryAbove:
    """Wraps a model: batches larger than `limit` raise torch.OutOfMemoryError, as a full GPU does."""

    def __init__(self, model, limit: int) -> None:
        self.model, self.limit, self.sizes = model, limit, []

    def __call__(self, x):
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x)


def test_out_of_memory_halves_the_batch_and_keeps_results(saved_models):
    folder, _ = saved_models("readout_add")
    photos = [_photos(1)[0]] * 8
    expected = _results(_engine(folder, "depth", False, {"npy"}, batch_size=1), photos)
    engine = _engine(folder, "depth", False, {"npy"}, batch_size=8)
    notes = []
    engine.notice = notes.append
    engine.net = _OutOfMemoryAbove(engine.model, limit=3)
    got = _results(engine, photos)
    assert engine.batch_size == 2 and engine.net.sizes[:3] == [8, 4, 2]
    assert any("batch size now 2" in n for n in notes)
    for g, e in zip(got, expected):
        assert np.abs(g.depth - e.depth).max() <= 1e-5 * np.abs(e.depth).max()


def test_out_of_memory_with_compile_padding_halves_the_padded_batch(saved_models):
    """--compile pads 3 photos to the batch size 8: the back-off halves 8, not 3."""
    folder, _ = saved_models("readout_add")
    engine = _engine(folder, "depth", False, {"npy"}, batch_size=8)
    engine.settings = Settings("depth", frozenset({"npy"}), compile=True, batch_size=8)
    engine.net = _OutOfMemoryAbove(engine.model, limit=2)
    got = _results(engine, [_photos(1)[0]] * 3)
    assert engine.net.sizes == [8, 4, 2, 2] and engine.batch_size == 2 and len(got) == 3


def test_a_runtime_error_saying_out_of_memory_backs_off_too(saved_models):
    """MPS and older CUDA builds raise a plain RuntimeError."""
    folder, _ = saved_models("readout_add")
    engine = _engine(folder, "depth", False, {"npy"}, batch_size=2)
    calls = []

    def net(x):
        calls.append(x.shape[0])
        if x.shape[0] > 1:
            raise RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)")
        return engine.model(x)

    engine.net = net
    assert len(_results(engine, [_photos(1)[0]] * 2)) == 2 and calls == [2, 1, 1]


def test_uploaded_taps_equal_the_host_ones():
    from dpt_cli.pipeline.resample import _device_taps, _tap_tensors

    cpu = torch.device("cpu")
    for n_in, n_out, cubic in [(768, 384, True), (50, 173, False)]:
        idx, weights = _device_taps(n_in, n_out, cubic, cpu, torch.float32)
        part = slice(7, 40)
        want_idx, want_weights = _tap_tensors(n_in, n_out, cubic, part, cpu, torch.float32, shift=3)
        assert torch.equal(idx[:, part] - 3, want_idx) and torch.equal(weights[:, part], want_weights)


def test_out_of_memory_at_batch_one_is_an_error(saved_models):
    folder, _ = saved_models("readout_add")
    engine = _engine(folder, "depth", False, {"npy"}, batch_size=1)
    engine.net = _OutOfMemoryAbove(engine.model, limit=0)
    with pytest.raises(torch.OutOfMemoryError):
        _results(engine, _photos(1))


@pytest.mark.parametrize("on_device", [False, True])
def test_non_finite_output_fails_in_the_writer(saved_models, on_device):
    folder, _ = saved_models("readout_add")
    engine = _engine(folder, "depth", on_device, {"png16"})
    engine.net = lambda x: torch.full((x.shape[0], *x.shape[2:]), float("nan"))
    jobs = [engine.prepare(_photos(1)[0], "nan.jpg")]
    (fetch,) = engine.infer(jobs)
    with pytest.raises(NonFiniteOutput, match=r"^nan.jpg: the model's output has [\d,]+ NaN and 0 infinite"):
        fetch()


def test_profile_counts_every_stage(saved_models):
    folder, _ = saved_models("readout_add")
    engine = _engine(folder, "depth", False, {"png16"})
    _results(engine, _photos(2))
    seconds = engine.profile.seconds
    assert seconds["preprocess"] > 0 and seconds["forward"] > 0 and seconds["postprocess"] > 0


def test_depth_to_size_on_device_equals_host():
    pred = torch.randn(24, 40, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(depth_to_size(pred, (61, 97), on_device=True).numpy(), depth_to_size(pred, (61, 97)))
