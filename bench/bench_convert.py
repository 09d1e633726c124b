"""Benchmark: `dpt convert` on a dpt_large-midas-sized fake checkpoint (1.37 GB, random weights).

Prints, measured in this one run on the same disk: conversion time / plain file copy time
(target < 3) and the converting process's peak resident memory / file size (target < 2.5).

Usage: .venv/bin/python bench/bench_convert.py [--dir DIR]   (DIR: where the files go; default a temp dir)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

_PROBE = """
import sys, time
from dpt_cli.weights.convert import convert
start = time.perf_counter()
convert(sys.argv[1], sys.argv[2])
elapsed = time.perf_counter() - start
peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(elapsed, peak)
"""


def main() -> None:
    from isl_org import fake_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src = Path(tmp) / "dpt_large_384.pt"
        torch.save(fake_checkpoint("dpt_large-midas"), src)
        size = src.stat().st_size
        copies, converts, peaks = [], [], []
        for i in range(3):  # alternate, with dirty pages flushed first, so neither pays for the other
            os.sync()
            start = time.perf_counter()
            shutil.copyfile(src, Path(tmp) / "copy.pt")
            copies.append(time.perf_counter() - start)
            (Path(tmp) / "copy.pt").unlink()
            os.sync()
            out = Path(tmp) / f"out{i}"
            done = subprocess.run([sys.executable, "-c", _PROBE, str(src), str(out)], capture_output=True, text=True, check=True)
            seconds, peak = map(float, done.stdout.split())
            converts.append(seconds)
            peaks.append(peak)
            shutil.rmtree(out)
        copy_s, convert_s, peak = statistics.median(copies), statistics.median(converts), max(peaks)
    print(f"file {size / 2**20:.0f} MiB: plain copy {copy_s:.2f} s, convert {convert_s:.2f} s (medians of 3)")
    print(f"  time convert / copy = {convert_s / copy_s:.2f}  (target < 3)")
    print(f"  peak RSS of the converting process {peak / 2**20:.0f} MiB = {peak / size:.2f} x file size  (target < 2.5)")


if __name__ == "__main__":
    main()
