"""Resizing back to photo size in bounded tiles: bitwise equal to the untiled result, within budget.

Three independent memory checks: the budget arithmetic over a grid of photo / network shapes and
class counts; every torch allocation of the real code traced on meta tensors (no data) for the
planned tiles of that grid (blind to scratch memory inside a kernel); and the peak RSS of real
runs in a fresh process (a 20000 x 1 segmentation with 150 classes grew RSS by 3.3 GB before the
tiles counted the network width; ~0.1 GB now).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import dpt_cli.pipeline.postprocess as post
from dpt_cli.pipeline import resample
from dpt_cli.pipeline.resample import data_bytes, plan_tiles, resize, span, taps_of, tile_bytes

UNTILED = 1 << 62  # a budget no tile reaches: one tile, the untiled computation
LABEL_FINISH = post.ARGMAX_BYTES + 2  # uint8 ids: int64 argmax, the cast, its host copy

# (network (h, w), photo (H, W)): thin both ways, primes, up- and downsampling, mixed
SHAPES = {
    "1xN": ((32, 48), (1, 1009)),
    "Nx1": ((48, 32), (1009, 1)),
    "primes-up": ((13, 17), (97, 103)),
    "primes-down": ((97, 89), (31, 37)),
    "mixed": ((40, 30), (23, 101)),
}


class Resizes:
    """Records the (rows, cols) tiles postprocess asks `resize` for."""

    def __init__(self, monkeypatch) -> None:
        self.tiles: list[tuple[slice, slice]] = []
        monkeypatch.setattr(post, "resize", self)

    def __call__(self, x, size, cubic=True, rows=None, cols=None, dtype=None):
        self.tiles.append((rows, cols))
        return resize(x, size, cubic, rows, cols, dtype)

    def count(self) -> tuple[int, int]:
        """Distinct row ranges, distinct column ranges."""
        return len({(r.start, r.stop) for r, _ in self.tiles}), len({(c.start, c.stop) for _, c in self.tiles})


def budgets(k: int, src: tuple[int, int], dst: tuple[int, int], finish: int) -> dict[str, int]:
    """Budgets that force several row tiles, and (when W > 1) tiles of one row and ~W/3 columns."""
    (height, width), sizes = dst, dict(finish_bytes=finish)
    out = {"rows": tile_bytes(k, src, dst, max(1, height // 3), width, **sizes)}
    if width > 1:
        out["cols"] = tile_bytes(k, src, dst, 1, max(1, width // 3), **sizes)
    return out


def untiled(fn, x: torch.Tensor, dst, monkeypatch) -> np.ndarray:
    monkeypatch.setattr(post, "TILE_BYTES", UNTILED)
    monkeypatch.setattr(post, "TILE_TARGET", None)
    calls = Resizes(monkeypatch)
    out = fn(x, dst)
    assert calls.count() == (1, 1)
    monkeypatch.undo()
    return out


@pytest.mark.parametrize("k", [1, 3, 300])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_labels_tiled_bitwise_equal(shape, k, monkeypatch):
    src, dst = SHAPES[shape]
    logits = torch.randn(k, *src)
    want = untiled(post.labels_to_size, logits, dst, monkeypatch)
    # the untiled result is the plain resize + argmax, in one piece
    assert np.array_equal(want, resize(logits, dst).argmax(0).numpy())
    assert want.dtype == (np.uint8 if k <= 256 else np.int32)
    for name, budget in budgets(k, src, dst, post.ARGMAX_BYTES + 2 * want.itemsize).items():
        monkeypatch.setattr(post, "TILE_BYTES", budget)
        calls = Resizes(monkeypatch)
        got = post.labels_to_size(logits, dst)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
        rows, cols = calls.count()
        if name == "rows":  # whole-width tiles of several rows
            assert cols == 1 and (rows > 1 or dst[0] == 1)
        else:  # both dims tiled: one-row tiles, several column ranges
            assert rows == dst[0] and cols > 1
        monkeypatch.undo()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_depth_tiled_bitwise_equal(shape, dtype, monkeypatch):
    src, dst = SHAPES[shape]
    pred = torch.rand(*src).to(dtype)
    want = untiled(post.depth_to_size, pred, dst, monkeypatch)
    # float32 math whatever the network's dtype: the same as resizing its exact float32 values
    assert want.dtype == np.float32 and np.array_equal(want, resize(pred.float()[None], dst)[0].numpy())
    for name, budget in budgets(1, src, dst, 4).items():
        monkeypatch.setattr(post, "TILE_BYTES", budget)
        calls = Resizes(monkeypatch)
        got = post.depth_to_size(pred, dst)
        assert np.array_equal(got, want), name
        rows, cols = calls.count()
        assert (rows > 1 or dst[0] == 1) and (cols > 1 or name == "rows" or dst[1] == 1)
        monkeypatch.undo()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_logits_label_like_their_float32_values(dtype, monkeypatch):
    logits = torch.randn(5, 24, 40).to(dtype)
    want = post.labels_to_size(logits.float(), (61, 90))
    monkeypatch.setattr(post, "TILE_BYTES", budgets(5, (24, 40), (61, 90), LABEL_FINISH)["cols"])
    assert np.array_equal(post.labels_to_size(logits, (61, 90)), want)


@pytest.mark.parametrize("cubic", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resize_tile_is_slice_of_whole(cubic, dtype):
    """Any (rows, cols) tile equals that slice of the whole resize, bitwise; preprocess's layout too."""
    photo = torch.rand(53, 71, 3, dtype=dtype).permute(2, 0, 1)  # (3, H, W) view of HWC, as preprocess
    for size in [(20, 30), (120, 160), (53, 200)]:
        whole = resize(photo, size, cubic)
        assert whole.dtype == dtype
        for rows, cols in [(slice(0, 1), slice(0, size[1])), (slice(7, 13), slice(3, 4)), (slice(size[0] - 5, size[0]), slice(11, 29))]:
            assert torch.equal(resize(photo, size, cubic, rows, cols), whole[:, rows, cols])


def test_long_axis_taps_equal_cached():
    """Axes longer than CACHED_AXIS get their taps per tile; those are the cached values, bitwise."""
    n = resample.CACHED_AXIS + 7
    whole = resample._taps(480, n, True, 0, n)
    cached = resample.taps.cache_info().currsize
    for part in [slice(0, 5), slice(n // 2, n // 2 + 1000), slice(n - 3, n)]:
        idx, weights = taps_of(480, n, True, part)
        assert np.array_equal(idx, whole[0][part]) and np.array_equal(weights, whole[1][part])
    assert resample.taps.cache_info().currsize == cached  # a 1 x 10^7 strip would cache 640 MB


# --- memory: arithmetic, traced allocations, real peak ----------------------------------------

BIG = [(100000, 1), (1, 100000), (9000, 9000), (20000, 1), (1, 20000), (4000, 6000), (1, 1)]
NETS = [(h, w) for h in (32, 480, 1024) for w in (32, 64, 128, 256, 512, 1024)]


def actual_span(src_w: int, dst_w: int, cols: int) -> int:
    """The most source columns any column tile of width `cols` really reads (from the taps)."""
    idx, _ = resample._taps(src_w, dst_w, True, 0, dst_w)
    starts = np.arange(0, dst_w, cols)
    ends = np.minimum(starts + cols, dst_w) - 1
    return int((idx[ends, -1] - idx[starts, 0]).max()) + 1


@pytest.mark.parametrize("target", [None, post.TILE_TARGET], ids=["budget-only", "target"])
@pytest.mark.parametrize("k, finish", [(1, 4), (150, LABEL_FINISH), (300, post.ARGMAX_BYTES + 8)])
def test_planned_tiles_within_budget(k, finish, target):
    budget = post.TILE_BYTES

    def fits(rows: int, cols: int) -> bool:
        within = tile_bytes(k, src, dst, rows, cols, **sizes) <= budget
        return within and (target is None or data_bytes(k, src, dst, rows, cols, **sizes) <= target)

    for dst in BIG:
        for src in NETS:
            for convert in (0, 2):  # float32 logits, or float16 ones converted tile by tile
                sizes = dict(convert_itemsize=convert, finish_bytes=finish)
                rows, cols = plan_tiles(k, src, dst, budget, target, **sizes)
                assert 1 <= rows <= dst[0] and 1 <= cols <= dst[1]
                assert tile_bytes(k, src, dst, rows, cols, **sizes) <= budget, (k, src, dst)
                assert fits(rows, cols) or (rows, cols) == (1, 1)  # the target yields only to one pixel
                # the largest such tile: one more row (or column, for one-row tiles) would not fit
                if cols == dst[1] and rows < dst[0]:
                    assert not fits(rows + 1, cols)
                if cols < dst[1]:
                    assert rows == 1 and not fits(1, cols + 1)
                assert actual_span(src[1], dst[1], cols) <= span(src[1], dst[1], cols)


def test_span_bound_holds_for_any_tile_width():
    rng = np.random.default_rng(0)
    for _ in range(300):
        src_w, dst_w = (int(v) for v in rng.integers(1, 3000, 2))
        cols = int(rng.integers(1, dst_w + 1))
        assert actual_span(src_w, dst_w, cols) <= span(src_w, dst_w, cols), (src_w, dst_w, cols)


class Traced(TorchDispatchMode):
    """Bytes held by every tensor torch allocates while active: live count and peak.

    Outputs that alias an input (views, in-place results) allocate nothing; a fresh tensor is freed
    when its last holder (views included: they keep their base) goes. Meta tensors make this free.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t, ret in zip(out if isinstance(out, (tuple, list)) else (out,), func._schema.returns):
            if isinstance(t, torch.Tensor) and ret.alias_info is None:
                n = t.numel() * t.element_size()
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, n)
        return out


def traced_tile(x: torch.Tensor, dst, rows: slice, cols: slice, finish) -> tuple[int, int]:
    """(peak torch bytes, peak numpy bytes) of resizing one tile and finishing it, as postprocess does."""
    resample.taps.cache_clear()  # count the taps' computation too
    tracemalloc.start()
    try:
        with Traced() as traced:
            out = finish(resize(x, dst, rows=rows, cols=cols, dtype=post.COMPUTE))
            del out
        return traced.peak, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dst", [(100000, 1), (1, 100000), (9000, 9000), (20000, 1)], ids=str)
@pytest.mark.parametrize("task", ["labels", "depth", "half-labels"])
@pytest.mark.parametrize("target", [None, post.TILE_TARGET], ids=["budget-only", "target"])
def test_traced_allocations_within_plan(dst, task, target, monkeypatch):
    """The real code's allocations for the worst planned tile stay within its tile_bytes and the budget."""
    monkeypatch.setattr(post, "TILE_TARGET", target)
    k, dtype = (1, torch.float32) if task == "depth" else (150, torch.float16 if task == "half-labels" else torch.float32)
    ids = torch.uint8

    def finish(tile):
        return tile[0] if task == "depth" else tile.argmax(0).to(ids)

    finish_bytes = 4 if task == "depth" else LABEL_FINISH
    for src in [(480, 32), (32, 480), (480, 480), (1024, 1024)]:
        x = torch.empty(k, *src, dtype=dtype, device="meta")
        rows, cols = post.tile_plan(x, dst, finish_bytes)
        planned = tile_bytes(k, src, dst, rows, cols, convert_itemsize=x.element_size() if dtype != post.COMPUTE else 0, finish_bytes=finish_bytes)
        assert planned <= post.TILE_BYTES
        # the first row tile is the largest; the widest-reaching column tile, found from the taps
        idx, _ = resample._taps(src[1], dst[1], True, 0, dst[1])
        starts = np.arange(0, dst[1], cols)
        c0 = int(starts[np.argmax(idx[np.minimum(starts + cols, dst[1]) - 1, -1] - idx[starts, 0])])
        torch_peak, numpy_peak = traced_tile(x, dst, slice(0, rows), slice(c0, min(dst[1], c0 + cols)), finish)
        assert torch_peak + numpy_peak <= planned, (src, rows, cols, torch_peak, numpy_peak, planned)
        assert torch_peak >= k * rows * cols * 4  # the trace does see the tile's result


_PEAK_PROBE = textwrap.dedent(
    """
    import torch
    import dpt_cli.pipeline.postprocess as post
    from dpt_cli.pipeline.postprocess import labels_to_size

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    def reset_peak():
        try:  # Linux >= 4.0: VmHWM back to the current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass  # then the peak so far counts too: over-, never under-estimates

    torch.manual_seed(0)
    labels_to_size(torch.randn(150, 480, 32), (50, 1))  # warm up: lazy imports, thread pools
    for target in (post.TILE_TARGET, None):  # as shipped; and tiles as large as the budget allows
        post.TILE_TARGET = target
        for k, net, size in [(150, (480, 32), (20000, 1)), (150, (480, 32), (100000, 1)), (150, (32, 480), (1, 100000))]:
            logits = torch.randn(k, *net)
            reset_peak()
            before = kib("VmRSS:")
            out = labels_to_size(logits, size)
            print(target or 0, size[0], size[1], (kib("VmHWM:") - before) * 1024, out.nbytes, flush=True)
            del out, logits
    """
)


def test_peak_rss_of_thin_segmentations():
    """Real runs in a fresh process: peak RSS growth within TILE_BYTES + 64 MiB (+ the output)."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", _PEAK_PROBE], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [list(map(int, line.split())) for line in result.stdout.split("\n") if line.strip()]
    assert [(h, w) for _, h, w, _, _ in lines] == [(20000, 1), (100000, 1), (1, 100000)] * 2
    for target, height, width, growth, output in lines:
        assert growth <= post.TILE_BYTES + (64 << 20) + output, f"{height}x{width}, target {target}: peak grew {growth / 2**20:.0f} MiB"
