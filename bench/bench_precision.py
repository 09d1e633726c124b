"""Benchmark: how far bfloat16 and float16 inference drift from float32, and what float32 final layers buy.

A seeded full-size DPT-Large (ViT-L/16, 384, relative depth; transformers' own initialisation,
torch.manual_seed(0), converted to our model in memory) runs seeded photo-like inputs (sky/ground
gradient, shaded shapes, stripes, noise; 384x384 and every third 384x512) in float32, the
reference, and in each variant below, composed here from the model's backbone, neck and head:
  all 16-bit | backbone 16-bit, neck+head float32 | backbone+neck 16-bit, head float32 |
  all 16-bit but the head's last 1x1 convolution (32 -> 1 channels) in float32 |
  torch.autocast (float32 weights, residual stream and norms; 16-bit matmuls/convs) | autocast
  backbone, neck+head float32; each for bfloat16 and float16.
Per variant, against float32 on the same input: max and mean |diff| as % of the float32 output's
range (max - min) and the max in 16-bit PNG steps (range / 65535); then each output min-max
normalised over its own range and quantised exactly as the 16-bit PNG writer does
(writers.normalise + quantise): the share of pixels whose value differs and the largest difference.
Also the share of the forward's FLOPs (FlopCounterMode, float32, attention as matmuls) that each
variant keeps in float32, and seconds per variant: on CPU over all images, not GPU speed; with
--device cuda the median of 5 timed batches of 8 (torch.cuda.synchronize), as a ratio to float32.

On CPU, float16 convolutions and matrix products have no fast kernels (a DPT-Large forward took
~4 minutes on 2 cores), so there they are emulated as a GPU computes them: float16 operands,
float32 accumulation, the result rounded to float16; every other float16 op runs natively. On
CUDA everything is native, and the float32 reference runs with TF32 off (the variants' float32
parts keep torch's defaults, as the CLI does: cuDNN convolutions in TF32).

Usage: .venv/bin/python bench/bench_precision.py [--images 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
# precision of a stage -> (its weights' and input's dtype, torch.autocast's dtype or None)
PRECISION = {"fp32": (F32, None), "bf16": (BF16, None), "fp16": (F16, None), "bf16-ac": (F32, BF16), "fp16-ac": (F32, F16)}
STAGES = ("backbone", "neck", "head", "last")  # "head": the head but its last conv ("last")
A = torch.ops.aten
HEAVY = {A.conv2d.default, A.conv_transpose2d.input, A.convolution.default, A.linear.default, A.addmm.default,
         A.mm.default, A.bmm.default, A.matmul.default}  # torch 2.14 hands a mode conv2d, linear undecomposed


def variants(s: str) -> list[tuple[str, tuple[str, ...]]]:
    """(label, precision of each of STAGES) for 16-bit type s ('bf16' or 'fp16')."""
    f, ac = "fp32", f"{s}-ac"
    return [(f"{s} all", (s, s, s, s)), (f"{s} backbone, neck+head fp32", (s, f, f, f)),
            (f"{s} backbone+neck, head fp32", (s, s, f, f)), (f"{s} all but last conv (fp32)", (s, s, s, f)),
            (f"{s} autocast", (ac, ac, ac, ac)), (f"{s} autocast backbone, neck+head fp32", (ac, f, f, f))]


class EmulatedHalfGemm(TorchDispatchMode):
    """float16 convolutions/matmuls as a GPU runs them (fp32 accumulation, fp16 result); CPU only."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HEAVY and any(isinstance(a, torch.Tensor) and a.dtype == F16 for a in args):
            up = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
            return func(*up, **(kwargs or {})).half()
        return func(*args, **(kwargs or {}))


def build_models(device: torch.device) -> dict[torch.dtype, torch.nn.Module]:
    from transformers import DPTConfig as HFConfig
    from transformers import DPTForDepthEstimation

    from dpt_cli.config import DPTConfig
    from dpt_cli.weights import model_from_state
    from test_full_size import DPT_LARGE

    torch.manual_seed(0)
    hf = DPTForDepthEstimation(HFConfig(**DPT_LARGE)).eval()
    model = model_from_state(DPTConfig.from_dict(hf.config.to_dict()), hf.state_dict()).to(device)
    del hf
    return {F32: model, BF16: copy.deepcopy(model).to(BF16), F16: copy.deepcopy(model).to(F16)}


def photo(height: int, width: int, seed: int) -> torch.Tensor:
    """A seeded photo-like (3, H, W) network input: gradient, shaded shapes, stripes, noise; (x - 0.5) / 0.5."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:1:height * 1j, 0:1:width * 1j].astype(np.float32)
    top, bottom = rng.uniform(0, 1, (2, 3, 1, 1))
    img = top * (1 - y) + bottom * y
    for _ in range(8):
        cy, cx, ry, rx = rng.uniform(0, 1, 4) * [1, 1, 0.3, 0.3] + [0, 0, 0.05, 0.05]
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1 if rng.random() < 0.5 else (abs(y - cy) < ry) & (abs(x - cx) < rx)
        shade = rng.uniform(0, 1, (3, 1, 1)) * (0.7 + 0.3 * (x - cx) / rx * rng.uniform(-1, 1))
        img = np.where(inside, shade, img)
    fy, fx = rng.uniform(5, 40, 2)
    img = img + 0.04 * np.sin(6.283 * (fy * y + fx * x)) + rng.normal(0, 0.02, img.shape)
    return torch.from_numpy((np.clip(img, 0, 1).astype(np.float32) - 0.5) / 0.5)


def run(models, x: torch.Tensor, precisions: tuple[str, ...], stage=lambda name: contextlib.nullcontext()) -> torch.Tensor:
    """The DPT forward (model.forward's composition) with each of STAGES in its own precision."""
    spec = dict(zip(STAGES, precisions))

    @contextlib.contextmanager
    def enter(name: str):  # -> (that stage's model, its input dtype), inside stage(name) and any autocast
        dt, autocast = PRECISION[spec[name]]
        with stage(name), torch.autocast(x.device.type, dtype=autocast) if autocast else contextlib.nullcontext():
            yield models[dt], dt

    with enter("backbone") as (m, dt):
        features, grid = m.backbone.forward_intermediates(x.to(dt), m.taps)
    with enter("neck") as (m, dt):
        fused = m.neck([f.to(dt) for f in features], grid)[m.config.head_in_index]
    with enter("head") as (m, dt):  # DepthHead.forward up to its last conv (DPT-Large has no projection)
        assert m.head.projection is None
        z = F.interpolate(m.head.conv1(fused.to(dt)), scale_factor=2, mode="bilinear", align_corners=True)
        z = F.relu(m.head.conv2(z))
    with enter("last") as (m, dt):
        return F.relu(m.head.conv3(z.to(dt))).squeeze(1)


def compare(y: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    from dpt_cli.pipeline.writers import normalise, quantise

    y, ref = y.float().cpu().numpy(), ref.float().cpu().numpy()
    span = float(ref.max() - ref.min())
    diff = np.abs(y.astype(np.float64) - ref)
    q = [quantise(normalise(a, float(a.min()), float(a.max())), 16).astype(np.int64) for a in (y, ref)]
    steps = np.abs(q[0] - q[1])
    return {"max": diff.max() / span, "mean": diff.mean() / span, "png_differ": (steps > 0).mean(),
            "png_max": steps.max(), "nonfinite": int((~np.isfinite(y)).sum())}


def flop_shares(models, x: torch.Tensor) -> dict[str, float]:
    """Each of STAGES' share of a float32 forward's FLOPs (attention as plain matmuls, so counted)."""
    counters = {s: FlopCounterMode(display=False) for s in STAGES}
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH), torch.inference_mode():
        run(models, x, ("fp32",) * 4, stage=lambda name: counters[name])
    flops = {s: c.get_total_flops() for s, c in counters.items()}
    total = sum(flops.values())
    print(f"float32 forward {tuple(x.shape)}: {total / 1e9:.0f} GFLOP; " + ", ".join(f"{s} {f / total:.2%}" for s, f in flops.items()))
    return {s: f / total for s, f in flops.items()}


def cuda_times(models, x: torch.Tensor, rows, repeats: int = 5) -> dict[str, float]:
    """Median seconds of one batch per variant (after 2 warm-up runs), torch.cuda.synchronize'd."""
    out = {}
    with torch.inference_mode():
        for label, dts in rows:
            times = []
            for _ in range(repeats + 2):
                torch.cuda.synchronize()
                start = time.perf_counter()
                run(models, x, dts)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            out[label] = statistics.median(times[2:])
    return out


def report(rows, stats: dict[str, list[dict]], seconds: dict[str, float], fp32_share: dict[str, float], gpu: dict[str, float] | None) -> None:
    """The table and the recommendation computed from it."""
    print("\nerror vs float32 (over all images): max and mean |diff| as % of range, max in 16-bit steps (range/65535);\n"
          "PNG16: each map min-max normalised over its own range and quantised as the writer does")
    head = (f"{'variant':40} {'fp32 FLOPs':>10} {'max %':>7} {'mean %':>7} {'max steps':>9} {'PNG16 px differ':>15} "
            f"{'PNG16 max':>9} {'CPU s' if gpu is None else 'GPU ms/8':>8}{'' if gpu is None else ' vs fp32':>9}")
    print(head + "\n" + "-" * len(head))
    summary = {}
    for label, _ in rows:
        s = stats[label]
        mx, mean = max(d["max"] for d in s), statistics.fmean(d["mean"] for d in s)
        differ, pmax = statistics.fmean(d["png_differ"] for d in s), max(d["png_max"] for d in s)
        bad = sum(d["nonfinite"] for d in s)
        speed = f"{seconds[label]:8.1f}" if gpu is None else f"{gpu[label] * 1e3:8.2f} {gpu['fp32 (reference)'] / gpu[label]:7.2f}x"
        print(f"{label:40} {fp32_share[label]:>10.2%} {mx * 100:7.3f} {mean * 100:7.4f} {mx * 65535:9.0f} {differ:>15.1%} {pmax:9d} {speed}"
              + (f"  {bad} non-finite!" if bad else ""))
        summary[label] = mx if not bad else float("inf")  # float16 overflow disqualifies
    if gpu is None:
        print("CPU s: this CPU's seconds for all images (float16 emulated); says nothing about GPU speed")
    else:
        print("GPU ms/8: median of 5 batches of 8 at 384x384; 'vs fp32': speed-up over float32 (TF32 convs, as the CLI)")

    # recommendation: smallest max error among the 16-bit variants at full speed: on a GPU, those not
    # slower than pure bfloat16 (3% noise allowed); on CPU (no GPU speed), those with < 1% of FLOPs in
    # fp32. A plain '<type> all' (just --dtype) within 15% of that wins the tie.
    candidates = [label for label, _ in rows[1:]]
    if gpu is not None:
        fast = [c for c in candidates if gpu[c] <= 1.03 * gpu["bf16 all"]]
        rule = "not slower than pure bf16 on this GPU"
    else:
        fast = [c for c in candidates if fp32_share[c] < 0.01]
        rule = "< 1% of FLOPs in fp32; autocast's extra memory traffic and all speed need --device cuda"
    best, overall = min(fast, key=summary.get), min(candidates, key=summary.get)
    plain = best.split()[0] + " all"
    best = plain if plain in fast and summary[plain] <= 1.15 * summary[best] else best
    print(f"\nrecommendation ({rule}): '{best}': max error {summary[best]:.3%} of range ({summary[best] * 65535:.0f} "
          f"16-bit steps), {summary['bf16 all'] / summary[best]:.1f}x below 'bf16 all' ({summary['bf16 all']:.3%}); "
          f"most accurate at any cost: '{overall}' {summary[overall]:.3%} ({summary[overall] * 65535:.0f} steps, "
          f"{fp32_share[overall]:.1%} of FLOPs in fp32); " + ("no 16-bit variant is within one 16-bit PNG step: float32 for exact PNG16" if summary[overall] * 65535 > 1 else "within one 16-bit PNG step"))
    print("(float16 can overflow on trained weights, which a random model does not show: check non-finite outputs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3, help="seeded inputs; every third is 384x512, the rest 384x384")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()
    models = build_models(device)
    images = [photo(384, 512 if i % 3 == 2 else 384, i).to(device) for i in range(args.images)]
    print(f"torch {torch.__version__}, {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f"; DPT-Large, seeded transformers init; {len(images)} images")
    share = flop_shares(models, images[0][None])
    rows = [("fp32 (reference)", ("fp32",) * 4)] + variants("bf16") + variants("fp16")
    emulate = EmulatedHalfGemm() if device.type == "cpu" else contextlib.nullcontext()
    stats: dict[str, list[dict]] = {label: [] for label, _ in rows}
    seconds = dict.fromkeys(stats, 0.0)
    for i, x in enumerate(images):
        ref = None
        with torch.inference_mode(), emulate:
            for label, dts in rows:
                true_f32 = device.type == "cuda" and ref is None  # the reference: no TF32
                with torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if true_f32 else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    y = run(models, x[None], dts)[0]
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    seconds[label] += time.perf_counter() - t0
                ref = y if ref is None else ref
                stats[label].append(compare(y, ref))
        ref = ref.float()
        span = float(ref.max() - ref.min())
        print(f"image {i} {tuple(x.shape[1:])}: float32 output {float(ref.min()):.4g}..{float(ref.max()):.4g}, "
              f"spatial std / range {float(ref.std()) / span:.3f}, zero (ReLU-clipped) {float((ref == 0).float().mean()):.1%}", flush=True)

    fp32_share = {label: sum(share[s] for s, p in zip(STAGES, dts) if p == "fp32") for label, dts in rows}
    gpu = cuda_times(models, torch.stack([photo(384, 384, 100 + i) for i in range(8)]).to(device), rows) if device.type == "cuda" else None
    report(rows, stats, seconds, fp32_share, gpu)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
