"""Benchmark: greyscale PNG encoding of depth maps (dpt_cli.pipeline.png), each backend x level.

For synthetic depth maps (default 1024x768; see `maps`), prints per backend and level:
  - ms per map on one thread (median of --reps; all backends and levels interleaved in each round);
  - MB per file;
  - maps/s on 2 threads, and its speed-up over one thread (about 2 only where the encoder releases
    the GIL and a second core is free);
  - time and size as ratios to Pillow at level 6 (Pillow's own default), measured in the same run.
Every file is decoded with Pillow and compared with its input; a mismatch stops the run. Timings
on a busy machine are noisy: run it alone.

Usage: .venv/bin/python bench/bench_encode.py [--reps 7] [--levels 0,1,2,3,6] [--maps scene,smooth,cumsum,scene8] [--size 1024x768]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, features

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_cli.pipeline import png  # noqa: E402


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (periodic, through the FFT) of an (H, W) float array."""
    fy, fx = np.fft.fftfreq(a.shape[0])[:, None], np.fft.rfftfreq(a.shape[1])[None, :]
    return np.fft.irfft2(np.fft.rfft2(a) * np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2)), s=a.shape)


def _full_range(field: np.ndarray) -> np.ndarray:
    """(H, W) float -> uint16 over 0..65535, truncating like writers.quantise."""
    return ((field - field.min()) / (field.max() - field.min()) * 65535).astype(np.uint16)


def maps(h: int, w: int) -> dict[str, np.ndarray]:
    """name -> (H, W) uint16 (or uint8 for names ending in 8) depth-like map, fixed seed."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    # scene: a ground plane and three objects with sharp edges, made at half size and upsampled
    # bicubically like a model's output, plus faint fine noise
    d = 0.2 + 0.8 * (y / h) ** 1.5
    for cy, cx, r, v in [(0.52, 0.29, 0.16, 0.9), (0.46, 0.68, 0.1, 0.7), (0.26, 0.49, 0.26, 0.4)]:
        d = np.where((y - cy * h) ** 2 + (x - cx * w) ** 2 < (r * h) ** 2, v + 0.1 * (y - cy * h) / (r * h), d)
    half = Image.fromarray(d[::2, ::2].astype(np.float32)).resize((w, h), Image.Resampling.BICUBIC)
    scene = _full_range(np.asarray(half) + 0.003 * _blur(rng.standard_normal((h, w)), 1.5))
    # smooth: a smoothly varying field plus gentle blurred noise
    u, v = y / h, x / w
    smooth = _full_range(0.6 * u + 0.2 * np.sin(3 * v) * np.cos(2 * u) + 0.15 * v * v + 0.02 * _blur(rng.standard_normal((h, w)), 3.0))
    # cumsum: running sums of blurred noise down and across, rough at every scale
    noise = _blur(rng.standard_normal((h, w)), 2.0)
    cumsum = _full_range(np.cumsum(noise, 0) + np.cumsum(noise, 1))
    return {"scene": scene, "smooth": smooth, "cumsum": cumsum, "scene8": (scene >> 8).astype(np.uint8)}


def encode(data: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    png.encode_png(data, buf, level)
    return buf.getvalue()


def import_ms(module: str) -> float:
    """Milliseconds to import `module` in a fresh interpreter that has numpy loaded already."""
    code = f"import time, numpy; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return 1e3 * float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--levels", default="0,1,2,3,6")
    ap.add_argument("--maps", default="scene,smooth,cumsum,scene8")
    ap.add_argument("--size", default="1024x768", help="WxH")
    args = ap.parse_args()
    w, h = (int(n) for n in args.size.lower().split("x"))
    levels = sorted({int(n) for n in args.levels.split(",")} | {6})
    all_maps = maps(h, w)
    backends = ["pillow"] + (["libdeflate"] if png._libdeflate() is not None else [])
    print(f"Pillow {Image.__version__} (zlib {features.version('zlib')}); numpy {np.__version__}; {os.cpu_count()} CPUs")
    if "libdeflate" in backends:
        print(f"libdeflate via `deflate` {png._libdeflate().__version__}: import {import_ms('deflate'):.1f} ms")
    else:
        print("libdeflate: `deflate` not installed (pip install 'dpt-cli[fast]'): Pillow only")
    combos = [(b, lvl) for b in backends for lvl in levels]
    for name in args.maps.split(","):
        data = all_maps[name]
        sizes: dict[tuple[str, int], int] = {}
        times: dict[tuple[str, int], list[float]] = {c: [] for c in combos}
        for backend, level in combos:  # warm up, and check every file once
            os.environ["DPT_PNG_ENCODER"] = backend
            blob = encode(data, level)
            with Image.open(io.BytesIO(blob)) as image:
                if not np.array_equal(np.asarray(image), data):
                    sys.exit(f"{backend} level {level}: {name} does not decode to its input")
            sizes[backend, level] = len(blob)
        for _ in range(args.reps):
            for backend, level in combos:
                os.environ["DPT_PNG_ENCODER"] = backend
                start = time.perf_counter()
                encode(data, level)
                times[backend, level].append(time.perf_counter() - start)
        threaded: dict[tuple[str, int], float] = {}
        with ThreadPoolExecutor(2) as pool:
            for backend, level in combos:
                os.environ["DPT_PNG_ENCODER"] = backend
                n = 2 * max(2, args.reps // 2)
                start = time.perf_counter()
                list(pool.map(lambda _: encode(data, level), range(n)))
                threaded[backend, level] = n / (time.perf_counter() - start)
        os.environ.pop("DPT_PNG_ENCODER")
        base_t, base_s = statistics.median(times["pillow", 6]), sizes["pillow", 6]
        print(f"\n{name}: {data.shape[1]}x{data.shape[0]} {data.dtype}; ratios are to pillow level 6")
        print(f"{'backend':10} {'level':>5} {'ms':>7} {'MB':>7} {'2-thr maps/s':>12} {'x 1-thr':>7} {'time':>6} {'size':>6}")
        for backend, level in combos:
            t = statistics.median(times[backend, level])
            s = sizes[backend, level]
            print(
                f"{backend:10} {level:5d} {t * 1e3:7.1f} {s / 1e6:7.3f} {threaded[backend, level]:12.1f}"
                f" {threaded[backend, level] * t:7.2f} {t / base_t:6.2f} {s / base_s:6.3f}"
            )


if __name__ == "__main__":
    main()
