"""`dpt depth`: photos to depth maps (16-bit PNG, raw float maps, colour pictures)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import options as o
from .run import execute

FORMATS = ("png16", "png8", "npy", "pfm", "tiff", "color", "side-by-side")
COLORMAPS = ("turbo", "inferno", "magma", "viridis", "Spectral_r", "gray")


def depth(
    inputs: o.Inputs,
    output: o.Output,
    model: Annotated[Optional[str], typer.Option("-m", "--model", help="Folder, hub id, or alias: large (default), hybrid.", show_default=False)] = None,
    fmt: Annotated[list[str], typer.Option("-f", "--format", help=f"With -o DIR, repeatable: {', '.join(FORMATS)} (default png16).", show_default=False)] = [],
    bits: Annotated[int, typer.Option("--bits", help="PNG depth: 16 or 8.")] = 16,
    colormap: Annotated[str, typer.Option("--colormap", help=f"Colour pictures: {', '.join(COLORMAPS)}.")] = "turbo",
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Also write the photo and its coloured depth next to each other.")] = False,
    png_level: Annotated[Optional[int], typer.Option("--png-level", min=0, max=9, help="PNG compression effort, 0-9: lossless at every level; higher is smaller and slower (default 2).", show_default=False)] = None,
    value_range: Annotated[Optional[str], typer.Option("--range", help="Normalise PNGs and pictures over MIN:MAX instead of each image's own range.", show_default=False)] = None,
    recursive: o.Recursive = False,
    follow_symlinks: o.FollowSymlinks = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    batch_size: o.BatchSize = None,
    size: o.Size = None,
    no_keep_aspect: o.NoKeepAspect = False,
    skip_existing: o.SkipExisting = False,
    overwrite: o.Overwrite = False,
    workers: o.Workers = None,
    compile_model: o.Compile = False,
    profile: o.Profile = False,
    quiet: o.Quiet = False,
) -> None:
    """Estimate depth for images, files or whole folders.

    Relative models (large, hybrid) give inverse relative depth: larger is nearer, no unit. Metric models (converted KITTI/NYU checkpoints) give metres. Raw values go to .npy, .pfm and .tiff; 16/8-bit PNGs and pictures are min-max normalised per image unless --range is given. Outputs: `-o out.png` (16-bit), `.npy`, `.pfm`, `.tiff`, `.jpg`/`.webp` (coloured), or `-o DIR` with --format. A dpt-run.json manifest records every file. Exit status: 0 all done, 1 some inputs failed, 2 usage error (also: another run is writing into the same -o), 130 interrupted. 
    """
    for f in fmt:
        o.choose(f, FORMATS, "--format")
    o.choose(colormap, COLORMAPS, "--colormap")
    if bits not in (8, 16):
        raise typer.BadParameter("use 8 or 16", param_hint="--bits")
    execute(
        "depth", inputs, output, model,
        recursive=recursive, follow_symlinks=follow_symlinks, device=device, dtype=dtype, size=o.parse_size(size), keep_aspect=not no_keep_aspect,
        formats=list(fmt), bits=bits, side_by_side=side_by_side, overlay=False, quiet=quiet,
        options_kwargs=dict(
            colormap=colormap, value_range=o.parse_range(value_range), batch_size=batch_size, workers=workers, compile=compile_model, profile=profile, png_level=png_level,
            skip_existing=skip_existing, overwrite=overwrite,
        ),
    )
