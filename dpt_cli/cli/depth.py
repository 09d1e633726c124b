"""`dpt depth`: photos to depth maps (16-bit PNG, raw float maps, colour pictures, point clouds)."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from . import options as o
from .conflicts import Asked
from .run import Request, execute

FORMATS = ("png16", "png8", "npy", "pfm", "tiff", "exr", "ply", "color", "side-by-side")
COLORMAPS = ("turbo", "inferno", "magma", "viridis", "Spectral_r", "gray")
Pixels = Annotated[Optional[float], typer.Option(metavar="PIXELS", show_default=False)]

EXAMPLES = """\b
Examples:
  dpt depth photo.jpg -o photo.png                 16-bit depth PNG
  dpt depth photos/ -r -o depth/ -f png16,color    a whole tree: PNGs and pictures
  dpt depth shot.jpg -o - > shot.png               to stdout (format from -f)
  find . -name '*.jpg' -print0 | dpt depth -0 - -o depth/
  dpt depth frames/ -o out/ -f color --range auto  one range for the whole folder
  dpt depth clip.mp4 -o out/                       a video: out/clip/000000.png, ...
  dpt depth clip.mp4 -o depth.mp4 --side-by-side   a video of the clip beside its depth
  dpt depth clip.mp4 -o depth.mkv                  16-bit depth, lossless (FFV1)
  dpt depth room.jpg -m nyu-folder -o room.ply --fov 60
"""


def depth(
    inputs: o.Inputs,
    output: o.Output = None,
    model: Annotated[Optional[str], typer.Option("-m", "--model", metavar="MODEL", help="Folder, hub id, or alias: large (default), hybrid; MiDaS v3.1: beit-large-512, beit-large-384, beit-base-384, swinv2-large-384, swinv2-base-384, swinv2-tiny-256; Depth Anything: da2-small, da2-base, da2-large, da2-metric-indoor-large, da2-metric-outdoor-large (and -small, -base), da1-small, da1-base, da1-large; DPT-DINOv2 (metres): dinov2-small-nyu, dinov2-large-kitti, ... (small, base, large, giant x nyu, kitti).", show_default=False)] = None,
    fmt: Annotated[list[str], typer.Option("-f", "--format", metavar="FORMAT[,FORMAT]", help=f"With -o DIR (any number) or -o - (one): {', '.join(FORMATS)} (default png16).", show_default=False)] = [],
    bits: Annotated[Optional[int], typer.Option("--bits", metavar="16|8", help="Bit depth of the depth PNG (default 16).", show_default=False)] = None,
    colormap: Annotated[Optional[str], typer.Option("--colormap", metavar="NAME", help=f"Colour pictures: {', '.join(COLORMAPS)} (default turbo).", show_default=False)] = None,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Also write the photo and its coloured depth next to each other (NAME.side-by-side.png); with -o NAME.mp4, the video shows them so.")] = False,
    png_level: Annotated[Optional[int], typer.Option("--png-level", metavar="0-9", min=0, max=9, help="PNG compression effort: lossless at every level; higher is smaller and slower (default 2).", show_default=False)] = None,
    value_range: Annotated[Optional[str], typer.Option("--range", metavar="MIN:MAX|auto|per-frame", help="Normalise PNGs, pictures and videos over MIN:MAX; over one range for all photos (auto), instead of each image's own; per-frame: each frame of a clip its own range. Default: each photo its own; one range per video clip (and for --sequence).", show_default=False)] = None,
    smooth: Annotated[Optional[int], typer.Option("--smooth", metavar="N", min=2, help="Clips and --sequence: a running range, the mean of the N frames' minima and maxima around each frame, for depth ranges that change (indoors to outdoors).", show_default=False)] = None,
    align: Annotated[bool, typer.Option("--align", help="Clips and --sequence, relative models: fit each frame's scale and shift to the previous frame (least squares on the inverse depth), against the per-frame drift of relative depth. Raw outputs hold the aligned values.")] = False,
    sequence: Annotated[bool, typer.Option("--sequence", help="The photos are frames of one sequence, in name order: one range for all (as for a video), and --smooth and --align apply.")] = False,
    fov: Annotated[Optional[float], typer.Option("--fov", metavar="DEGREES", help="-f ply: the camera's horizontal field of view.", show_default=False)] = None,
    fx: Annotated[Optional[float], typer.Option("--fx", metavar="PIXELS", help="-f ply: focal length in pixels (with --fy; instead of --fov).", show_default=False)] = None,
    fy: Annotated[Optional[float], typer.Option("--fy", metavar="PIXELS", help="-f ply: vertical focal length in pixels.", show_default=False)] = None,
    cx: Annotated[Optional[float], typer.Option("--cx", metavar="PIXELS", help="-f ply: principal point (default: the image centre).", show_default=False)] = None,
    cy: Annotated[Optional[float], typer.Option("--cy", metavar="PIXELS", help="-f ply: principal point (default: the image centre).", show_default=False)] = None,
    recursive: o.Recursive = False,
    follow_symlinks: o.FollowSymlinks = False,
    null: o.Null = False,
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

    Video clips (mp4, mkv, mov, webm, avi, ...; needs the video extra: pip install 'dpt-cli[video]') are found by content: -o DIR writes each frame (DIR/clip/000000.png, ... in every --format); -o NAME.mp4 writes the coloured depth (or --side-by-side) as H.264 at the clip's frame rate, lossy; -o NAME.mkv writes 16-bit depth as FFV1, lossless: the exact values of the 16-bit PNGs. A clip's PNGs, pictures and videos share one range unless --range says otherwise; the float maps wait in a hidden folder of the output folder until the range is known, and an interrupted run resumes from them (--skip-existing). Relative models' depth drifts in scale from frame to frame: see --align.

    Relative models (large, hybrid, the MiDaS v3.1 BEiT and Swin-V2 models) give inverse relative depth: larger is nearer, no unit. Official models get their original preprocessing: DPT and BEiT keep the aspect ratio (multiples of 32 near 384, or 512 for beit-large-512); Swin-V2 runs only at its square size (384, or 256 for swinv2-tiny-256), as the original does: each photo is squashed to it and the depth map resized back to the photo's shape. Depth Anything: short side at least 518, keep aspect, multiples of 14; relative models give inverse relative depth, metric ones metres (up to 20 indoor, 80 outdoor). DPT-DINOv2: no resize (the photo is padded to multiples of 14 and the padding cropped from the depth), metres. Metric models (converted KITTI/NYU checkpoints) give metres. Raw values go to .npy, .pfm, .tiff and .exr; 16/8-bit PNGs and pictures are min-max normalised per image unless --range is given; .ply is a coloured point cloud. The dpt-run.json manifest in the output folder keeps every file's record (with the PNG's min/max) across runs. Exit status: 0 all done, 1 some inputs failed, 2 usage error (also: a model that cannot be used, or another run writing into the same -o), 130 interrupted.
    """
    formats = o.split_formats(fmt, FORMATS)
    o.choose(colormap or "turbo", COLORMAPS, "--colormap")
    if bits not in (None, 8, 16):
        raise typer.BadParameter("use 8 or 16", param_hint="--bits")
    if fov is not None and not 0 < fov < 180:
        raise typer.BadParameter(f"{fov}: a field of view lies between 0 and 180 degrees", param_hint="--fov")
    camera = _camera(fov, fx, fy, cx, cy)
    asked = Asked(
        "depth", o.destination(output, "depth"), formats, bits=bits, colormap=colormap, side_by_side=side_by_side,
        value_range=value_range, png_level=png_level, skip_existing=skip_existing, overwrite=overwrite, smooth=smooth, align=align,
        recursive=recursive, follow_symlinks=follow_symlinks, null=null, reads_stdin="-" in inputs, camera=camera is not None,
    )
    named = value_range in ("auto", "per-frame")
    options = dict(
        colormap=colormap or "turbo", value_range=None if named else o.parse_range(value_range),
        auto_range=value_range == "auto", per_frame=value_range == "per-frame", sequence=sequence, smooth=smooth or 0,
        align=align, batch_size=batch_size, workers=workers, compile=compile_model,
        profile=profile, png_level=png_level, skip_existing=skip_existing, overwrite=overwrite, camera=camera,
    )
    execute(asked, inputs, Request(model, device, dtype, o.parse_size(size), not no_keep_aspect, quiet, options))


def _camera(fov, fx, fy, cx, cy) -> Optional[dict]:
    """--fov or --fx/--fy/--cx/--cy as one dict (None when none is given)."""
    given = {k: v for k, v in dict(fov=fov, fx=fx, fy=fy, cx=cx, cy=cy).items() if v is not None}
    if not given:
        return None
    if fov is not None and (fx is not None or fy is not None):
        raise typer.BadParameter("give the field of view or the focal lengths, not both", param_hint="--fov")
    if fov is None and (fx is None or fy is None):
        raise typer.BadParameter("give both --fx and --fy (or --fov)", param_hint="--fx/--fy")
    for name, value in given.items():
        if not math.isfinite(value) or (name in ("fx", "fy") and not value > 0):
            raise typer.BadParameter(f"{value}: must be a finite{' positive' if name in ('fx', 'fy') else ''} number", param_hint=f"--{name}")
    return given
