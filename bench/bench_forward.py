"""Benchmark: our DPT against transformers' on dpt-large-sized random weights (CPU, float32).

Prints, measured in this one run:
  - forward time at 384x384 (median of N runs, runs interleaved): ours / theirs (target <= 1.0);
  - peak resident memory added by loading dpt-large from model.safetensors in a fresh process,
    as a multiple of the file size (target <= 1.3).

Usage: .venv/bin/python bench/bench_forward.py [--runs 5] [--batch 1] [--size 384]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

_MEMORY_PROBE = """
import sys, torch
import dpt_cli.weights
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = rss("VmRSS:")
model = dpt_cli.weights.load_model(sys.argv[1])
loaded = rss("VmHWM:")
with torch.inference_mode():
    model(torch.zeros(1, 3, 32, 32))  # touches every weight page of the memory-mapped file
print(before, loaded, rss("VmHWM:"))
"""


def time_forward(model, x: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(x) if not hasattr(model, "dpt") else model(pixel_values=x)
    return time.perf_counter() - start


def main() -> None:
    from transformers import DPTConfig as HFConfig
    from transformers import DPTForDepthEstimation

    from dpt_cli.weights import load_model
    from reference import randomize
    from test_full_size import DPT_LARGE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=384)
    args = ap.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32")
    theirs = randomize(DPTForDepthEstimation(HFConfig(**DPT_LARGE)))
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(tmp)
        ours = load_model(tmp)
        file_size = (Path(tmp) / "model.safetensors").stat().st_size
        probe = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, tmp], capture_output=True, text=True, check=True
        )
    before, peak, used = map(int, probe.stdout.split())

    x = torch.randn(args.batch, 3, args.size, args.size)
    for model in (ours, theirs):  # warm-up
        time_forward(model, x)
    t_ours, t_theirs = [], []
    for _ in range(args.runs):
        t_ours.append(time_forward(ours, x))
        t_theirs.append(time_forward(theirs, x))
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"forward {args.batch}x3x{args.size}x{args.size}: ours {mo * 1000:.0f} ms, transformers {mt * 1000:.0f} ms")
    print(f"  ratio ours/theirs = {mo / mt:.3f}  (target <= 1.0)")
    mib = 2**20
    print(
        f"load from safetensors: file {file_size / mib:.0f} MiB, RSS before {before / mib:.0f} MiB, "
        f"peak after load {peak / mib:.0f} MiB, peak after a first forward {used / mib:.0f} MiB"
    )
    print(f"  load: peak added / file size = {(peak - before) / file_size:.3f}  (target <= 1.3)")
    print(f"  load + first forward (all pages touched): {(used - before) / file_size:.3f}")


if __name__ == "__main__":
    main()
