"""Benchmark: our MiDaS v3.1 (BEiT, Swin-V2), Depth Anything and DPT-DINOv2 models against transformers'
DPTForDepthEstimation / DepthAnythingForDepthEstimation.

Full-size architectures of the releases with seeded random weights (no download), one model pair
per release, both forwards on the same input and weights, interleaved, median of N runs. Prints per
release: our time, transformers' time and the ratio ours / theirs (target <= 1.0), and the max
difference relative to transformers' output range (a sanity check, not the parity test; DINOv2
models run at their trained 518x518, where transformers' position rule equals the original's).

CPU (default): float32, batch 1. GPU: --device cuda --dtype bfloat16 --batch 16 prints images/s
for both (BEiT runs at its trained size, Swin-V2 at its square size).

Usage: .venv/bin/python bench/bench_families.py [--releases dpt_beit_base_384,dpt_swin2_tiny_256]
       [--runs 3] [--batch 1] [--device cpu] [--dtype float32] [--size HxW (BEiT only)]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

DEFAULT = "dpt_beit_base_384,dpt_swin2_tiny_256,dpt_swin2_base_384,depth_anything_v2_vits,depth_anything_v2_vitb,dpt_dinov2_small_nyu"
# facebook/dpt-dinov2-small-*, as transformers' converter builds it (dinov2_dpt.md)
DINOV2_DPT_SMALL = dict(
    backbone_config=dict(model_type="dinov2", image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12,
                         num_attention_heads=6, out_features=["stage3", "stage6", "stage9", "stage12"],
                         apply_layernorm=False, reshape_hidden_states=False),
    neck_hidden_sizes=[48, 96, 192, 384], use_bias_in_fusion_residual=False, add_projection=True,
)


def timed(fn, x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def pair(stem: str, device: str, dtype: torch.dtype):
    """(ours, transformers') for one release: transformers' model with random weights, saved, loaded by us."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTConfig, DPTForDepthEstimation

    from dpt_cli.weights import load_model
    from reference import randomize

    if stem.startswith("depth_anything"):
        from depth_anything import transformers_config

        theirs = randomize(DepthAnythingForDepthEstimation(DepthAnythingConfig(**transformers_config(stem))), seed=1)
        last = theirs.head.conv3
    else:
        from midas31 import transformers_config

        config = DINOV2_DPT_SMALL if stem == "dpt_dinov2_small_nyu" else transformers_config(stem)
        theirs = randomize(DPTForDepthEstimation(DPTConfig(**config)), seed=1)
        last = theirs.head.head[4]
    with torch.no_grad():  # a non-negative last conv: random signs can leave the final ReLU at zero everywhere
        last.weight.abs_()
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(tmp)
        ours = load_model(tmp, dtype=dtype, device=device)
    theirs = theirs.to(device=device, dtype=dtype)
    return ours, (lambda x: theirs(pixel_values=x).predicted_depth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--releases", default=DEFAULT)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--size", default=None, help="HxW for BEiT releases (default: the trained square)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)

    from midas31 import image_size as midas_size

    def image_size(stem: str) -> int:
        return 518 if "dinov2" in stem or stem.startswith("depth_anything") else midas_size(stem)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device} {args.dtype}, batch {args.batch}")
    for stem in args.releases.split(","):
        torch.manual_seed(0)
        ours, theirs = pair(stem, args.device, dtype)
        side = image_size(stem)
        h, w = (int(v) for v in args.size.split("x")) if args.size and "beit" in stem else (side, side)
        x = torch.randn(args.batch, 3, h, w, device=args.device, dtype=dtype)
        with torch.inference_mode():
            a, b = ours(x).float(), theirs(x).float()  # also the warm-up
        err = ((a - b).abs().max() / (b.max() - b.min())).item()
        t_ours, t_theirs = [], []
        for _ in range(args.runs):
            t_ours.append(timed(ours, x))
            t_theirs.append(timed(theirs, x))
        mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
        print(
            f"{stem} {h}x{w}: ours {mo * 1000:.0f} ms ({args.batch / mo:.2f} img/s), transformers {mt * 1000:.0f} ms "
            f"({args.batch / mt:.2f} img/s); ratio ours/theirs = {mo / mt:.3f} (target <= 1.0); max diff / range {err:.1e}"
        )
        del ours, theirs


if __name__ == "__main__":
    main()
