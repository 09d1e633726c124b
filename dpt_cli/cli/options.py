"""Options shared by `dpt depth` and `dpt segment`, and their parsing (no torch imported here)."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from ..limits import MAX_BATCH_SIZE, MIN_NETWORK_SIDE, MAX_NETWORK_PIXELS, MAX_NETWORK_SIDE, MAX_WORKERS

Inputs = Annotated[list[str], typer.Argument(metavar="INPUT...", help="Image files, video clips, folders, glob patterns, or - for stdin: a path list (one per line; NUL-separated with -0) or one image's bytes.", show_default=False)]
Output = Annotated[Optional[str], typer.Option("-o", "--output", metavar="PATH", help="A file (one input; its extension sets the format; a clip: .mp4 or .mkv), a folder (mirrors the inputs; a trailing / or an existing folder, or a name without extension), or - for stdout. Default: the folder dpt-out.", show_default=False)]
Recursive = Annotated[bool, typer.Option("-r", "--recursive", help="Descend into subfolders.")]
Null = Annotated[bool, typer.Option("-0", "--null", help="With -, read NUL-separated paths (find -print0).")]
Device = Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
Dtype = Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="auto (float32 on CPU, float16 on GPUs: closest to float32 at full speed; bfloat16 for Swin-V2, which can overflow float16), float32, float16, bfloat16.")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", metavar="N", min=1, max=MAX_BATCH_SIZE, help="Images per forward pass, grouped by network size (default: 1 on the CPU, 32 on a GPU; halved for the rest of the run if the GPU runs out of memory).", show_default=False)]
Size = Annotated[Optional[str], typer.Option("--size", metavar="N|HxW", help=f"Network input to aim at, height x width: N or HxW, each side 32..{MAX_NETWORK_SIDE}, {MAX_NETWORK_PIXELS:,} pixels at most (default: the model's, e.g. 384).", show_default=False)]
NoKeepAspect = Annotated[bool, typer.Option("--no-keep-aspect", help="Squash to the network size instead of keeping the aspect ratio.")]
SkipExisting = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs all exist (resume an interrupted run).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never inputs).")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress or summary; errors only.")]
Workers = Annotated[Optional[int], typer.Option("--workers", metavar="N", min=1, max=MAX_WORKERS, help="Threads decoding images, and as many encoding outputs (default: one per CPU core, at most 32).", show_default=False)]
Compile = Annotated[bool, typer.Option("--compile", help="Compile the model with torch.compile: faster on GPUs after a slow first batch of each network size (shown as 'compiling').")]
Profile = Annotated[bool, typer.Option("--profile", help="Record the seconds spent reading, preprocessing, in the model, resizing back and encoding (in dpt-run.json, and printed at the end).")]
FollowSymlinks = Annotated[bool, typer.Option("--follow-symlinks", help="With -r, descend into symbolic links to folders (loops are detected and skipped).")]

def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < MIN_NETWORK_SIDE:
        raise typer.BadParameter(f"{text!r}: use N or HxW with integers of at least {MIN_NETWORK_SIDE}, e.g. 384 or 352x1216", param_hint="--size")
    if max(values) > MAX_NETWORK_SIDE:
        raise typer.BadParameter(f"{text!r}: each side must be at most {MAX_NETWORK_SIDE}", param_hint="--size")
    height, width = values[0], values[-1]
    if height * width > MAX_NETWORK_PIXELS:
        raise typer.BadParameter(
            f"{text!r}: {height}x{width} is {height * width:,} network pixels; the limit is {MAX_NETWORK_PIXELS:,} (e.g. 2048 or 1024x4096): "
            "beyond it a forward pass takes many minutes and gigabytes", param_hint="--size")
    return height, width


def parse_range(text: Optional[str]) -> Optional[tuple[float, float]]:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use MIN:MAX, e.g. 0:10", param_hint="--range") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise typer.BadParameter(f"{text!r}: MIN and MAX must be finite numbers", param_hint="--range")
    if not hi > lo:
        raise typer.BadParameter(f"{text!r}: MAX must be greater than MIN", param_hint="--range")
    return lo, hi


def choose(value: str, allowed: tuple[str, ...], hint: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=hint)
    return value


def split_formats(values: list[str], allowed: tuple[str, ...]) -> list[str]:
    """-f png16,color and -f png16 -f color alike; each one checked."""
    return [choose(f.strip(), allowed, "--format") for value in values for f in value.split(",") if f.strip()]


def destination(text: Optional[str], task: str):
    """-o parsed (see pipeline.destination); its usage errors are raised as they are."""
    from ..pipeline.destination import parse

    return parse(text, task)
