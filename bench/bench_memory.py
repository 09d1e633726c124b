"""Benchmark: peak resident memory of the real CLI on thin and very large photos (CPU, float32).

Builds tiny seeded DPT model folders (transformers' DPTForSemanticSegmentation with 150 classes,
as ADE20K, and DPTForDepthEstimation; saved with save_pretrained, no network), generates photos
of 100000 x 1, 1 x 100000, 20000 x 1 and 9000 x 9000 (81 Mpx, under Pillow's ~89 Mpx limit), and
runs `python -m dpt_cli segment|depth PHOTO -o OUT -m FOLDER` on each in a child process. Prints
each child's peak RSS (os.wait4's ru_maxrss for that child alone), the same for a photo of the
network's own size (imports ~670 MiB with torch, model, the same forward: the baseline), the
growth over that baseline, the result's own size and the resize-back budget (TILE_BYTES). Before tiling counted the network width, segmenting
100000 x 1 peaked at 17.7 GB and 20000 x 1 at 4 GB.

A child's ru_maxrss starts from its parent's RSS at spawn (Linux carries the pre-exec memory's
high-water mark over exec), so this process stays small (stdlib only): a `--prepare` child builds
the models and photos, and each measured child is spawned from here.

The growth includes everything the run holds besides the resize-back: the decoded photo (12 B a
pixel as float32 RGB), its network input, writers' buffers; the resize-back's transient share is
bounded by the budget, its (H, W) result is not transient.

Usage: .venv/bin/python bench/bench_memory.py [--cases 100000x1,1x100000,20000x1,9000x9000]
                                              [--tasks segment,depth] [--dir DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
CASES = ["100000x1", "1x100000", "20000x1", "9000x9000"]
TASKS = ["segment", "depth"]
CLASSES = 150  # ADE20K's: the class count of the figures


@dataclass
class Run:
    """One child process: its exit code, peak RSS (bytes) and wall time (seconds)."""

    code: int
    peak: int
    seconds: float
    err: str


def build_models(folder: Path) -> dict[str, Path]:
    """Seeded random-weight model folders: task ('segment' | 'depth') -> folder."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTForSemanticSegmentation

    sys.path.insert(0, str(ROOT / "tests"))  # the tests' small ViT-DPT: the network runs in well
    from reference import TINY_VIT  # under a second, so the photo sizes dominate memory

    made = {}
    for task, cls, extra in [
        ("segment", DPTForSemanticSegmentation, dict(num_labels=CLASSES, use_batch_norm_in_fusion_residual=True)),
        ("depth", DPTForDepthEstimation, {}),
    ]:
        torch.manual_seed(0)
        model = cls(DPTConfig(**TINY_VIT, **extra)).eval()
        with torch.no_grad():  # BatchNorm statistics of a trained model, not the zero-mean defaults
            for name, b in model.named_buffers():
                if name.endswith("running_var"):
                    b.uniform_(0.5, 1.5)
        made[task] = folder / task
        model.save_pretrained(made[task])
    return made


def make_photo(path: Path, height: int, width: int) -> Path:
    """A smooth colour photo (gradients and waves: every class and depth range gets used) as PNG."""
    import numpy as np
    from PIL import Image

    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    rgb = np.empty((height, width, 3), dtype=np.uint8)  # built channel by channel: 1 B a pixel each
    for c, (fy, fx) in enumerate([(7.0, 3.0), (2.0, 11.0), (5.0, 5.0)]):
        rgb[..., c] = (127.5 + 127.5 * np.sin(fy * 6.283 * y + fx * 6.283 * x)).astype(np.uint8)
    Image.fromarray(rgb).save(path, compress_level=1)
    return path


def run_cli(args: list[str], threads: int | None, root: Path = ROOT) -> Run:
    """`python -m dpt_cli ARGS` in a child run from the checkout `root`; its own peak RSS from
    wait4 (not other children's)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "dpt_cli", *args], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        seconds = time.perf_counter() - start
        err.seek(0)
        message = err.read().decode(errors="replace").strip()
    return Run(child.returncode, usage.ru_maxrss * 1024, seconds, message)


def output_bytes(task: str, height: int, width: int) -> int:
    """Bytes of the resize-back's result: (H, W) uint8 class ids or float32 depth."""
    return height * width * (1 if task == "segment" else 4)


def prepare(folder: Path, cases: list[tuple[int, int]], tasks: list[str]) -> None:
    """In a child of its own: models, photos (each case's and its network-sized twin), plan.json."""
    from dpt_cli.pipeline.postprocess import TILE_BYTES
    from dpt_cli.pipeline.preprocess import original

    models = build_models(folder)
    plan = {"budget": TILE_BYTES, "models": {t: str(p) for t, p in models.items()}, "photos": {}, "network": {}}
    for task in tasks:
        network = original("segmentation" if task == "segment" else "depth")
        for h, w in cases:
            plan["network"][f"{task} {h}x{w}"] = list(network.network_size(h, w))
    sizes = {(h, w) for h, w in cases} | {tuple(n) for n in plan["network"].values()}
    for h, w in sorted(sizes):
        plan["photos"][f"{h}x{w}"] = str(make_photo(folder / f"{h}x{w}.png", h, w))
    (folder / "plan.json").write_text(json.dumps(plan))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="photo sizes HxW, comma-separated")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--dir", type=Path, default=None, help="where the models and photos go (default a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the children")
    ap.add_argument("--against", type=Path, default=None,
                    help="another checkout (e.g. `git worktree add /tmp/ref 67c11a1`): run each case with it too, same photos and models, and print the ratio")
    ap.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)  # the preparing child
    args = ap.parse_args()
    cases = [tuple(int(v) for v in c.split("x")) for c in args.cases.split(",") if c]
    tasks = [t for t in args.tasks.split(",") if t]
    if args.prepare:
        prepare(args.prepare, cases, tasks)
        return

    mib = 1 << 20
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, __file__, "--prepare", str(tmp), "--cases", args.cases, "--tasks", args.tasks], check=True, stderr=subprocess.DEVNULL)
        plan = json.loads((tmp / "plan.json").read_text())
        budget = plan["budget"]

        def run(task: str, h: int, w: int, root: Path = ROOT) -> Run:
            out = tmp / f"{task}-{h}x{w}.png"
            cli = [task, plan["photos"][f"{h}x{w}"], "-o", str(out), "-m", plan["models"][task], "--device", "cpu", "-q", "--overwrite"]
            return run_cli(cli, args.threads, root)

        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"resize-back budget (postprocess.TILE_BYTES): {budget / mib:.0f} MiB; {CLASSES} classes; CPU float32")
        print(f"(this measuring process: {parent / mib:.0f} MiB peak, a floor under every child's figure)")
        header = f"{'task':8} {'photo':>10} {'network':>8} {'peak RSS':>9} {'same-net':>9} {'growth':>9} {'result':>8} {'budget':>8} {'time':>6}  exit"
        print(header)
        print("-" * len(header))
        for task in tasks:
            baselines: dict[tuple[int, int], Run] = {}
            for h, w in cases:
                net = tuple(plan["network"][f"{task} {h}x{w}"])
                if net not in baselines:  # a photo of the network's own size: same forward, tiny rest
                    baselines[net] = run(task, *net)
                base, case = baselines[net], run(task, h, w)
                print(
                    f"{task:8} {f'{h}x{w}':>10} {'x'.join(map(str, net)):>8} {case.peak / mib:>5.0f} MiB {base.peak / mib:>5.0f} MiB "
                    f"{(case.peak - base.peak) / mib:>5.0f} MiB {output_bytes(task, h, w) / mib:>4.0f} MiB {budget / mib:>4.0f} MiB "
                    f"{case.seconds:>5.1f}s  {case.code}",
                    flush=True,
                )
                if args.against:
                    ref = run(task, h, w, args.against)
                    print(f"{'':8} {'reference':>10} {'':>8} {ref.peak / mib:>5.0f} MiB   ours/reference peak: {case.peak / ref.peak:.2f}  "
                          f"time {ref.seconds:.1f}s (ours/reference {case.seconds / ref.seconds:.2f})  exit {ref.code}", flush=True)
                for r in (base, case):
                    if r.code != 0:
                        print(f"    failed: {r.err.splitlines()[-1] if r.err else 'no message'}")
        print("same-net: peak RSS of the same command on a photo of the network's size (imports, model, forward)")
        print("growth: peak RSS - same-net = what the photo's size costs: decode, resize-back, writing")
        print("result: the (H, W) label / depth map itself (uint8 / float32), outside the budget")


if __name__ == "__main__":
    main()
