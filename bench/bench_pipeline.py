"""Benchmark: `dpt depth` on a folder of photos end to end, against transformers' pipeline.

Every number printed is measured in this one run (CPU or GPU, auto-detected), on seeded random weights.
  A. `python -m dpt_cli depth PHOTOS -o OUT -m FOLDER` in a child vs a child running transformers'
     pipeline("depth-estimation") on the same JPEGs, decode to PNG written (its loading untimed), dpt-large
     shape, interleaved, nobody warmed up. img/s in-run (ours: the manifest's profile wall_seconds, with
     --profile) and over each child's wall (imports and loading included). CPU: ours float32 and bfloat16
     vs theirs float32, batch 1; GPU: ours bfloat16 batch 64 vs theirs float16 batch 16. Then ours bfloat16
     vs float32 (npy, 2 photos). transformers' DPT needs a square token grid: non-square photos are
     squashed to 384x384 by both (ours --no-keep-aspect; ours keeping the aspect is an extra row).
  C. GPU only: the model alone, 384x384 bfloat16: batch 64 img/s and batch 1 ms, eager and compiled
     (--no-compile: eager only, and no ours --compile row in A; --model-only: C alone).
--host-only (B): a tiny model, so host work dominates: stage costs from the profile on one core, one
  thread (--workers 1), then img/s on all N cores; efficiency = measured / (N / one-core
  read+preprocess+encode per photo), target >= 0.8. Needs --profile in the CLI (exits 2 without).
"others": cores' worth of CPU other processes took meanwhile (/proc/stat); well above 0 = disturbed.

Usage: .venv/bin/python bench/bench_pipeline.py [--photos N] [--photo-size WxH] [--repeats R] [--no-compile]
       .venv/bin/python bench/bench_pipeline.py --host-only [--photos 48] [--photo-size 1024x768] [--net-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
# The cheapest DPT that dpt runs (transformers builds and saves it; its forward needs distinct taps, so
# this model is ours only). Weights drawn wider than transformers' 0.02 so that depth maps are not all
# zero after the final ReLU: PNG encoding then costs what a real map costs, not what a blank one does.
# Its forward still costs ~15-50 ms a photo on one CPU core at 384x512: DPT's head runs a 32-channel
# 3x3 convolution at full network resolution whatever the config.
TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16, image_size=64,
            patch_size=16, backbone_out_indices=[0, 0, 0, 0], neck_hidden_sizes=[4, 4, 4, 4], fusion_hidden_size=2,
            initializer_range=0.5)
STAGES = ("read", "preprocess", "forward", "postprocess", "encode")


@dataclass
class Run:
    """One child process, as measured from here and read from its manifest or output."""

    code: int
    wall: float  # the child's whole life, seconds
    others: float = 0.0  # cores' worth of CPU other processes took meanwhile
    images: int = 0
    inrun: float | None = None  # ours: profile wall_seconds; theirs: first decode to last write
    stages: dict = field(default_factory=dict)  # ours: profile thread-seconds per stage
    err: str = ""
    note: str = ""  # ours: the device run on; theirs: the image processor's class


def machine() -> str:
    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); {gpu}; torch {torch.__version__}"


def build_folder(folder: Path, config: dict) -> Path:
    """Seeded random-weight DPTForDepthEstimation and a DPT-style preprocessor_config.json (384, bicubic)."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    DPTForDepthEstimation(DPTConfig(**config)).eval().save_pretrained(folder)
    DPTImageProcessor(do_resize=True, size={"height": 384, "width": 384}, keep_aspect_ratio=True, ensure_multiple_of=32,
                      resample=3, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def make_photo(path: Path, width: int, height: int, seed: int) -> None:
    """Seeded smooth waves per channel plus noise, JPEG quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.linspace(0, 1, height, dtype=np.float32)[:, None], np.linspace(0, 1, width, dtype=np.float32)[None, :]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    for c in range(3):
        fy, fx, phase = rng.uniform(0.5, 6, 3)
        wave = 127.5 + 100 * np.sin(6.283 * (fy * y + fx * x) + phase)
        rgb[..., c] = np.clip(wave + rng.standard_normal((height, width), dtype=np.float32) * 12, 0, 255)
    Image.fromarray(rgb).save(path, quality=90)


def make_photos(folder: Path, count: int, size: str) -> Path:
    width, height = map(int, size.split("x"))
    folder.mkdir(parents=True)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(lambda i: make_photo(folder / f"photo{i:04d}.jpg", width, height, i), range(count)))
    return folder


def cli_flags() -> set[str]:
    """The optional flags `dpt depth --help` mentions (--profile and --compile are new)."""
    env = dict(os.environ, COLUMNS="300", TERM="dumb", NO_COLOR="1")
    text = subprocess.run([sys.executable, "-m", "dpt_cli", "depth", "--help"], cwd=ROOT, env=env, capture_output=True, text=True).stdout
    return {f for f in ("--profile", "--compile") if f in text}


def busy_seconds() -> tuple[float, float]:
    """(core-seconds the machine has been busy per /proc/stat, CPU seconds of this process and its children)."""
    ticks = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
    own = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), own


def child(cmd: list[str], env: dict | None = None, pin: int | None = None) -> tuple[subprocess.CompletedProcess, Run]:
    """Run `cmd` from the checkout: its wall time, and the load other processes added meanwhile."""
    pre = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
    (busy0, own0), start = busy_seconds(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, preexec_fn=pre)
    wall, (busy1, own1) = time.perf_counter() - start, busy_seconds()
    return done, Run(done.returncode, wall, max(0.0, busy1 - busy0 - (own1 - own0)) / wall, err=done.stderr.strip())


def run_ours(inputs: list[Path], out: Path, folder: Path, extra: list[str], env: dict | None = None, pin: int | None = None) -> Run:
    """`python -m dpt_cli depth` in a child; images, in-run seconds and stages from its manifest."""
    _, run = child([sys.executable, "-m", "dpt_cli", "depth", *map(str, inputs), "-o", str(out), "-m", str(folder),
                    "-q", "--overwrite", *extra], env, pin)
    try:
        doc = json.loads((out / "dpt-run.json").read_text())
    except (OSError, ValueError):
        return run
    latest = (doc.get("runs") or [doc])[-1]  # the manifest keeps every run into the folder: this one is the last
    profile = latest.get("profile") or {}
    run.images, run.note = latest.get("counts", {}).get("ok", 0), latest.get("device", "?")
    # CPU time of the thread in each stage where recorded: elapsed time would count waits for a shared core
    run.inrun, run.stages = profile.get("wall_seconds"), profile.get("cpu_seconds") or profile.get("seconds") or {}
    return run


def run_theirs(photos: Path, out: Path, folder: Path, device: str, dtype: str, batch: int, squash: bool) -> Run:
    spec = dict(photos=str(photos), out=str(out), folder=str(folder), device=device, dtype=dtype, batch=batch, squash=squash)
    done, run = child([sys.executable, __file__, "--theirs-child", json.dumps(spec)])
    if done.returncode == 0:
        doc = json.loads(done.stdout.strip().splitlines()[-1])
        run.images, run.inrun, run.note = doc["images"], doc["seconds"], doc["processor"]
    return run


def theirs_child(spec: dict) -> None:
    """In the child: load the pipeline (untimed), then decode every photo, infer, save each depth PNG (timed)."""
    import torch
    from PIL import Image
    from transformers import pipeline

    pipe = pipeline("depth-estimation", model=spec["folder"], device=spec["device"], dtype=getattr(torch, spec["dtype"]))
    pipe.image_processor.keep_aspect_ratio = not spec["squash"]  # squash: a square token grid, all transformers runs
    paths, out = sorted(Path(spec["photos"]).glob("*.jpg")), Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = pipe([Image.open(p).convert("RGB") for p in paths], batch_size=spec["batch"])
    for p, r in zip(paths, results):
        r["depth"].save(out / f"{p.stem}.png")
    seconds = time.perf_counter() - start
    print(json.dumps({"images": len(results), "seconds": seconds, "processor": type(pipe.image_processor).__name__}))


def tail(run: Run) -> str:
    """The child's last line on stderr that is not its --profile summary."""
    return next((l for l in reversed(run.err.splitlines()) if not l.startswith("profile")), "no message")


def fmt(value: float | None, spec: str, width: int) -> str:
    return f"{'n/a' if value is None else format(value, spec):>{width}}"


def end_to_end(tmp: Path, folder: Path, args, flags: set[str], gpu: bool) -> None:
    """Table A (with C's end-to-end rows on a GPU): interleaved repeats, medians; then the bfloat16 error."""
    photos = make_photos(tmp / "photos", args.photos, args.photo_size)
    width, height = map(int, args.photo_size.split("x"))
    device, squash = ("cuda" if gpu else "cpu"), width != height
    base, squashed = ["--device", device, *(["--profile"] if "--profile" in flags else [])], ["--no-keep-aspect"] * squash
    if gpu:
        b64 = base + ["--dtype", "bfloat16", "--batch-size", "64"]
        ours = {"ours bf16 b64": b64 + squashed}
        if squash:
            ours["ours bf16 b64 keep-aspect"] = b64
        if "--compile" in flags and not args.no_compile:
            ours["ours bf16 b64 --compile"] = ours["ours bf16 b64"] + ["--compile"]
        theirs = ("transformers fp16 b16", "float16", 16)
    else:
        ours = {f"ours {short} b1": base + squashed + ["--dtype", dt, "--batch-size", "1"] for short, dt in (("fp32", "float32"), ("bf16", "bfloat16"))}
        theirs = ("transformers fp32 b1", "float32", 1)
    # transformers' pipeline on a GPU runs at a few img/s: it gets the first `--theirs-photos` (img/s compared)
    subset, expected = photos, {name: args.photos for name in ours}
    if gpu and args.theirs_photos < args.photos:
        subset = tmp / "photos-theirs"
        subset.mkdir()
        for p in sorted(photos.glob("*.jpg"))[: args.theirs_photos]:
            os.link(p, subset / p.name)
    expected[theirs[0]] = len(list(subset.glob("*.jpg")))
    runs: dict[str, list[Run]] = {name: [] for name in [*ours, theirs[0]]}
    for r in range(args.repeats):
        for k, name in enumerate(runs):
            out = tmp / f"out{k}"
            runs[name].append(run_ours([photos], out, folder, ours[name]) if name in ours
                              else run_theirs(subset, out, folder, device, theirs[1], theirs[2], squash))
            shutil.rmtree(out, ignore_errors=True)
            print(f"  repeat {r + 1}/{args.repeats} {name}: {runs[name][-1].wall:.1f} s child wall", flush=True)
    print_end_to_end(runs, expected, theirs[0], args, squash, "--profile" in flags)
    print_errors(tmp, photos, folder, device)


def print_end_to_end(runs: dict[str, list[Run]], expected: dict[str, int], ref: str, args, squash: bool, profiled: bool) -> None:
    print(f"\nA. folder end to end: {args.photos} JPEGs {args.photo_size} (transformers: {expected[ref]}), median of {args.repeats} interleaved run(s)"
          + (", both sides squash to 384x384 (transformers' DPT needs a square grid)" if squash else ""))
    header = f"{'run':26} {'in-run s':>9} {'img/s':>8} {'vs theirs':>9} {'wall s':>8} {'img/s':>8} {'vs theirs':>9} {'others':>7}"
    print(header + "\n" + "-" * len(header))
    med = {}
    for name, rs in runs.items():
        n = expected[name]
        bad = next((r for r in rs if r.code != 0 or r.images != n), None)
        if bad:
            print(f"{name:26} FAILED (exit {bad.code}, {bad.images} of {n} images): {tail(bad)}")
            continue
        inrun = statistics.median(r.inrun for r in rs) if all(r.inrun for r in rs) else None
        wall = statistics.median(r.wall for r in rs)
        med[name] = (inrun and n / inrun, n / wall, inrun, wall, statistics.median(r.others for r in rs))
    ti, tw = med.get(ref, (None, None))[:2]
    for name, (ri, rw, inrun, wall, others) in med.items():
        print(f"{name:26} {fmt(inrun, '.2f', 9)} {fmt(ri, '.3f', 8)} {fmt(ri and ti and ri / ti, '.3f', 9)} "
              f"{wall:>8.2f} {rw:>8.3f} {fmt(tw and rw / tw, '.3f', 9)} {others:>7.2f}")
    print("in-run: ours = the manifest's profile wall_seconds; transformers = first decode to last PNG written "
          f"(pipeline loaded before; image processor {runs[ref][0].note or '?'})")
    print("wall: the whole child, imports and model load included, both sides; vs theirs: img/s ratio, > 1 = ours faster")
    print("outputs: ours 16-bit PNG (its default), transformers 8-bit PNG (the pipeline's 'depth' image)")
    if not profiled:
        print("ours in-run n/a: this CLI has no --profile, so ours is measured by its child's wall time only")


def print_errors(tmp: Path, photos: Path, folder: Path, device: str) -> None:
    """Ours bfloat16 against ours float32: npy outputs of the first 2 photos."""
    import numpy as np

    two, outs = sorted(photos.glob("*.jpg"))[:2], {}
    for dt in ("float32", "bfloat16"):
        outs[dt] = tmp / f"npy-{dt}"
        r = run_ours(two, outs[dt], folder, ["--device", device, "--dtype", dt, "-f", "npy"])
        if r.code != 0:
            print(f"\nerror check: ours {dt} failed (exit {r.code}): {tail(r)}")
            return
    print(f"\nours bfloat16 vs ours float32 ({device}, npy outputs):")
    for p in two:
        a, b = (np.load(next(outs[dt].rglob(f"{p.stem}*.npy"))).astype(np.float64) for dt in ("bfloat16", "float32"))
        diff = np.abs(a - b).max()
        print(f"  {p.name}: max abs {diff:.4g}, max abs / max |fp32| {diff / np.abs(b).max():.4g} (fp32 range {b.min():.4g}..{b.max():.4g})")


def time_model(call, x, warmup: int, iters: int) -> tuple[float, float]:
    """(first call's seconds, median of `iters` calls after `warmup` more), each synchronised."""
    import torch

    times = []
    with torch.inference_mode():
        for _ in range(1 + warmup + iters):
            start = time.perf_counter()
            call(x)
            torch.cuda.synchronize() if x.is_cuda else None
            times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1 + warmup:])


def model_only(folder: Path, compile_too: bool, device: str = "cuda") -> None:
    """Table C: the network alone at 384x384 bfloat16 on the GPU, eager then compiled."""
    import torch
    from transformers import DPTForDepthEstimation

    from dpt_cli.weights.load import load_model

    bf16 = torch.bfloat16
    models = {"ours": load_model(folder, dtype=bf16, device=device),
              "theirs": DPTForDepthEstimation.from_pretrained(folder, dtype=bf16).to(device).eval()}
    calls = {"ours": lambda m: m, "theirs": lambda m: (lambda x: m(pixel_values=x).predicted_depth)}
    inputs = {b: torch.randn(b, 3, 384, 384, device=device, dtype=bf16) for b in (64, 1)}
    print(f"\nC. model only, GPU, 384x384 bfloat16, dpt-large shape (transformers attention: "
          f"{models['theirs'].config._attn_implementation}); medians after warm-up, synchronised; compiled: dynamic=False, one graph per batch size")
    header = f"{'model':16} {'b64 img/s':>10} {'vs theirs':>9} {'b1 ms':>8} {'vs theirs':>9} {'1st call b64, b1 s':>19}"
    print(header + "\n" + "-" * len(header), flush=True)
    ref = (1.0, 1.0)  # transformers' row comes first in each mode and sets it
    for mode in ("eager", "compiled") if compile_too else ("eager",):
        for name in ("theirs", "ours"):  # each row as soon as measured: a timeout keeps what was done
            fn = calls[name](torch.compile(models[name], dynamic=False) if mode == "compiled" else models[name])
            (f64, t64), (f1, t1) = time_model(fn, inputs[64], 2, 5), time_model(fn, inputs[1], 5, 30)
            ips, ms = 64 / t64, t1 * 1000
            ref = (ips, ms) if name == "theirs" else ref
            print(f"{name + ' ' + mode:16} {ips:>10.1f} {ips / ref[0]:>9.3f} {ms:>8.2f} {ref[1] / ms:>9.3f} {f64:>10.1f}, {f1:<7.1f}", flush=True)
    print("vs theirs: speed ours/transformers, > 1 = ours faster; a compiled 1st call includes compiling")


def host_only(tmp: Path, args, flags: set[str]) -> None:
    """Mode B: host work per photo on one core, then img/s on all cores, with a tiny model."""
    if "--profile" not in flags:
        print("--host-only needs `dpt depth --profile` (per-stage seconds in dpt-run.json); this CLI has none")
        sys.exit(2)
    folder, photos = build_folder(tmp / "tiny", TINY), make_photos(tmp / "photos", args.photos, args.photo_size)
    cores, size = sorted(os.sched_getaffinity(0)), (["--size", str(args.net_size)] if args.net_size else [])
    single = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    one = run_ours([photos], tmp / "one", folder, ["--workers", "1", "--profile", *size], single, pin=cores[0])
    full = run_ours([photos], tmp / "all", folder, ["--profile", *size])
    for label, r in (("one-core", one), ("all-core", full)):
        if r.code != 0 or r.images != args.photos:
            sys.exit(f"{label} run failed (exit {r.code}, {r.images} of {args.photos} images): {tail(r)}")
        if not r.stages or not r.inrun:
            print(f"{label} run: dpt-run.json has no \"profile\" with wall_seconds and per-stage seconds")
            sys.exit(2)
    n, per = len(cores), {s: 1000 * one.stages.get(s, 0.0) / one.images for s in STAGES}
    print(f"\nB. host pipeline: tiny model ({TINY['hidden_size']} wide, {TINY['num_hidden_layers']} layers) on {full.note}, "
          f"network size {args.net_size or 'the model default (384)'}, {args.photos} JPEGs {args.photo_size}, png16 outputs")
    header = f"{'ms per photo':14} {'1 core, 1 thread':>17} {f'{n} cores, defaults':>19}"
    print(header + "\n" + "-" * len(header))
    for s in STAGES:
        print(f"{s:14} {per[s]:>17.1f} {1000 * full.stages.get(s, 0.0) / full.images:>19.1f}")
    print(f"{'stage sum':14} {sum(per.values()):>17.1f} {1000 * sum(full.stages.values()) / full.images:>19.1f}   (thread CPU seconds; the"
          " forward's torch worker threads not included)")
    print(f"{'in-run wall':14} {1000 * one.inrun / one.images:>17.1f} {1000 * full.inrun / full.images:>19.1f}"
          f"   (profile wall_seconds / images); others: {one.others:.2f}, {full.others:.2f} cores")
    cost, measured = (per["read"] + per["preprocess"] + per["encode"]) / 1000, full.images / full.inrun
    print(f"\nN = {n} cores; one-core read+preprocess+encode = {cost * 1000:.1f} ms/photo; ceiling N / cost = {n / cost:.1f} img/s")
    print(f"measured on {n} cores: {measured:.1f} img/s; efficiency = measured / ceiling = {measured / (n / cost):.3f}  (target >= 0.8)")
    for label, c in (("+ postprocess", cost + per["postprocess"] / 1000), ("whole one-core run", one.inrun / one.images)):
        print(f"  ceiling with {label} ({c * 1000:.1f} ms/photo): {n / c:.1f} img/s, efficiency {measured / (n / c):.3f}")
    print(f"  forward: {per['forward']:.1f} ms/photo on one core = {per['forward'] / (cost * 1000):.0%} of the read+preprocess+encode cost")
    if sum(per.values()) > 1.1 * one.inrun / one.images * 1000:
        print("  note: the one-core stages sum to more than its wall time: its threads time-slice one core, so each stage's\n"
              "  seconds include waiting for the core: its costs are overstated, so ceilings under- and efficiencies overstated")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host-only", action="store_true", help="mode B: host pipeline efficiency with a tiny model")
    ap.add_argument("--photos", type=int, default=None, help="default 6 on CPU, 512 on GPU, 48 with --host-only")
    ap.add_argument("--photo-size", default=None, help="WxH; default 1024x1024 on CPU, 1024x768 on GPU and with --host-only")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved runs of each; default 2 on CPU, 1 on GPU")
    ap.add_argument("--no-compile", action="store_true", help="GPU: no torch.compile rows, no ours --compile")
    ap.add_argument("--model-only", action="store_true", help="GPU: table C alone (no photos, no end-to-end runs)")
    ap.add_argument("--theirs-photos", type=int, default=64, help="GPU: photos for transformers' pipeline (its img/s is compared)")
    ap.add_argument("--net-size", type=int, default=None, help="--host-only: the CLI's --size (default: the model's 384)")
    ap.add_argument("--dir", type=Path, default=None, help="where models, photos and outputs go (default a temp dir)")
    ap.add_argument("--theirs-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.theirs_child:
        return theirs_child(json.loads(args.theirs_child))
    import torch

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: still remove the temp dir (GBs)
    gpu = torch.cuda.is_available() and not args.host_only
    if args.model_only and not gpu:
        sys.exit("--model-only needs a CUDA GPU")
    args.photos = args.photos or (48 if args.host_only else 512 if gpu else 6)
    args.photo_size = args.photo_size or ("1024x768" if gpu or args.host_only else "1024x1024")
    args.repeats = args.repeats or (1 if gpu else 2)
    flags = cli_flags()
    print(f"machine: {machine()}\ndpt depth has: {', '.join(sorted(flags)) or 'neither'} (of --profile, --compile)", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.host_only:
            return host_only(Path(tmp), args, flags)
        from test_full_size import DPT_LARGE  # Intel/dpt-large's config (transformers' DPTConfig() is dpt-base-sized)

        print("building a dpt-large-shaped random-weight folder" + ("" if args.model_only else f" and {args.photos} photos {args.photo_size}"), flush=True)
        folder = build_folder(Path(tmp) / "large", DPT_LARGE)
        if not args.model_only:
            end_to_end(Path(tmp), folder, args, flags, gpu)
        if gpu:
            model_only(folder, not args.no_compile)


if __name__ == "__main__":
    main()
