"""Options shared by `dpt depth` and `dpt segment`, and their parsing (no torch imported here)."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from ..limits import MAX_BATCH_SIZE, MAX_NETWORK_SIDE, MAX_WORKERS

Inputs = Annotated[list[str], typer.Argument(help="Image files, directories, glob patterns, - (one path per line on stdin) or /dev/stdin (one image's bytes). Only regular files are read.", show_default=False)]
Output = Annotated[str, typer.Option("-o", "--output", metavar="PATH", help="Output file (one input; format from its extension) or directory (mirrors the input tree).", show_default=False)]
Recursive = Annotated[bool, typer.Option("-r", "--recursive", help="Descend into subdirectories.")]
Device = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto (float32 on CPU, bfloat16 or float16 on GPUs), float32, float16, bfloat16.")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Images per forward pass, grouped by network size (default: 1 on the CPU, 32 on a GPU; halved for the rest of the run if the GPU runs out of memory).", show_default=False)]
Size = Annotated[Optional[str], typer.Option("--size", help=f"Network size to aim at: N or HxW, each 32..{MAX_NETWORK_SIDE} (default: the model's, e.g. 384).", show_default=False)]
NoKeepAspect = Annotated[bool, typer.Option("--no-keep-aspect", help="Squash to the network size instead of keeping the aspect ratio.")]
SkipExisting = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs all exist (resume an interrupted run).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never inputs).")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress or summary; errors only.")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=1, max=MAX_WORKERS, help="Threads decoding images, and as many encoding outputs (default: one per CPU core, at most 32).", show_default=False)]
Compile = Annotated[bool, typer.Option("--compile", help="Compile the model with torch.compile: faster on GPUs after a slow first batch of each network size (shown as 'compiling').")]
Profile = Annotated[bool, typer.Option("--profile", help="Record the seconds spent reading, preprocessing, in the model, resizing back and encoding (in dpt-run.json, and printed at the end).")]
FollowSymlinks = Annotated[bool, typer.Option("--follow-symlinks", help="With -r, descend into symbolic links to directories (loops are detected and skipped).")]


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise typer.BadParameter(f"{text!r}: use N or HxW with positive integers, e.g. 384 or 352x1216", param_hint="--size")
    if max(values) > MAX_NETWORK_SIDE:
        raise typer.BadParameter(f"{text!r}: each side must be at most {MAX_NETWORK_SIDE}", param_hint="--size")
    return (values[0], values[-1])


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
