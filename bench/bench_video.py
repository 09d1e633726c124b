"""Benchmark: `dpt depth clip.mp4` end to end against the same frames as a folder of PNGs.

Every number is measured in this one run, on seeded random weights and a generated clip:
  1. A clip (H.264, --frames of --size) and its frames decoded once and saved as PNGs. Each input runs
     in a child `python -m dpt_cli depth INPUT -o OUT -m FOLDER -f png16 --range per-frame --profile`
     (the same work per frame), interleaved, --repeats times; frames/s in-run (the manifest's profile
     wall) and over the child's wall (imports and model loading included); ratio clip / PNG folder.
  2. The clip with its default one range for the clip (maps kept as float until the range is known),
     and with -o NAME.mp4 (an H.264 video out), against the per-frame row.
  3. --align on a static camera: one view whose exposure changes from frame to frame (lossless FFV1),
     -f npy with and without --align; flicker = mean |d(k) - d(k-1)| / mean |d| over the clip.
Two models: "tiny" (the host work dominates: decoding, resizing, encoding) and "vit-s" (DPT with a
ViT-S/16-sized backbone: the model dominates). On a GPU (--device cuda), also the model alone at the
clip's network size, batch --batch-size: the end-to-end rate over the model's own.

Usage: .venv/bin/python bench/bench_video.py [--frames 48] [--size 480x640] [--repeats 2]
       .venv/bin/python bench/bench_video.py --device cuda --dtype bfloat16 --batch-size 16 --size 1080x1920
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_pipeline import build_folder  # noqa: E402 (after the paths it needs)

MODELS = {
    "tiny": dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16, image_size=64,
                 patch_size=16, backbone_out_indices=[0, 0, 0, 0], neck_hidden_sizes=[4, 4, 4, 4], fusion_hidden_size=2,
                 initializer_range=0.5),
    "vit-s": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, image_size=384,
                  patch_size=16, backbone_out_indices=[2, 5, 8, 11], neck_hidden_sizes=[48, 96, 192, 384],
                  fusion_hidden_size=64, initializer_range=0.2),
}


def make_inputs(tmp: Path, frames: int, size: tuple[int, int]) -> tuple[Path, Path]:
    from PIL import Image
    from video import decode_all, make_clip

    clip = tmp / "clip.mp4"
    make_clip(clip, frames, size, fps=30, gop=30)
    folder = tmp / "pngs"
    folder.mkdir()
    for k, frame in enumerate(decode_all(clip)):
        Image.fromarray(frame).save(folder / f"{k:06d}.png", compress_level=1)
    return clip, folder


def run(inputs: Path, out: Path, model: Path, extra: list[str]) -> tuple[float, float, int]:
    """(in-run seconds, wall seconds, frames done) of one child."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "dpt_cli", "depth", str(inputs), "-o", str(out), "-m", str(model), "--profile", "-q", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    manifest = out.parent / "dpt-run.json" if out.suffix else out / "dpt-run.json"
    latest = json.loads(manifest.read_text())["runs"][-1]
    done = sum(v["done"] for v in latest["videos"]) if latest.get("videos") else latest["counts"]["ok"]  # a video is one record
    return latest["profile"]["wall_seconds"], wall, done


def flicker(folder: Path) -> float:
    import numpy as np

    maps = [np.load(p).astype(np.float64) for p in sorted(folder.glob("*.npy"))]
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(maps, maps[1:])]) / np.mean([np.abs(m).mean() for m in maps]))


def align_check(tmp: Path, key: str, folder: Path, common: list[str]) -> None:
    from video import static_clip

    clip = static_clip(tmp / f"static-{key}.mkv", 24, (240, 320))
    values = {}
    for label, extra in (("raw", []), ("aligned", ["--align"])):
        out = tmp / f"align-{key}-{label}"
        run(clip, out, folder, [*common, "-f", "npy", *extra])
        values[label] = flicker(out / clip.stem)
    print(f"{key:<6} static camera, 24 frames: flicker raw {values['raw']:.4f}, --align {values['aligned']:.4f} "
          f"(ratio {values['aligned'] / values['raw']:.3f})")


def model_alone(folder: Path, size: tuple[int, int], device: str, dtype: str, batch: int) -> float:
    """Frames/s of our model alone at the network size `dpt` picks for a frame of `size`."""
    import torch

    from dpt_cli.cli.loading import load
    from dpt_cli.pipeline.preprocess import from_folder

    model = load(folder, str(folder), dtype=getattr(torch, dtype), device=torch.device(device))
    h, w = from_folder(folder, "depth", model.config).check(*size, name="frame")
    x = torch.rand(batch, 3, h, w, device=device, dtype=getattr(torch, dtype))
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize() if device.startswith("cuda") else None
        start, runs = time.perf_counter(), 10
        for _ in range(runs):
            model(x)
        torch.cuda.synchronize() if device.startswith("cuda") else None
    return batch * runs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="480x640", help="HxW of the clip")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default="tiny,vit-s")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    common = ["--device", args.device, "--dtype", args.dtype, *(["--batch-size", str(args.batch_size)] if args.batch_size else [])]
    with tempfile.TemporaryDirectory(prefix="dpt-bench-video-") as name:
        tmp = Path(name)
        clip, pngs = make_inputs(tmp, args.frames, size)
        print(f"clip: {args.frames} frames {size[0]}x{size[1]} H.264; {os.cpu_count()} cores; device {args.device} {args.dtype}")
        print(f"{'model':<6} {'input':<34} {'in-run f/s':>10} {'wall f/s':>9} {'ratio':>6}")
        for key in args.models.split(","):
            folder = build_folder(tmp / key, MODELS[key])
            rows = {"PNG folder, per-frame": (pngs, ["-f", "png16", "--range", "per-frame"], "o"),
                    "clip, per-frame": (clip, ["-f", "png16", "--range", "per-frame"], "o"),
                    "clip, one range (default)": (clip, ["-f", "png16"], "o"),
                    "clip -> depth.mp4": (clip, [], "depth.mp4")}
            best: dict[str, tuple[float, float]] = {}
            for r in range(args.repeats):
                for label, (inputs, extra, target) in rows.items():
                    out = tmp / f"{key}-{r}-{label.replace(' ', '_').replace(',', '').replace('>', '')}" / target
                    inrun, wall, done = run(inputs, out, folder, [*common, *extra])
                    rates = (done / inrun, done / wall)
                    best[label] = max(best.get(label, (0, 0)), rates)
            base = best["PNG folder, per-frame"][0]
            for label, (inrun, wall) in best.items():
                print(f"{key:<6} {label:<34} {inrun:>10.2f} {wall:>9.2f} {inrun / base:>6.3f}")
            align_check(tmp, key, folder, common)
            if args.device.startswith("cuda"):
                alone = model_alone(folder, size, args.device, args.dtype, args.batch_size or 16)
                print(f"{key:<6} {'model alone (same network size)':<34} {alone:>10.2f} {'':>9} "
                      f"clip/model {best['clip, per-frame'][0] / alone:.3f}")


if __name__ == "__main__":
    main()
