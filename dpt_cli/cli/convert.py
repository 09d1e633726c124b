"""`dpt convert SRC.pt -o DIR`: an original isl-org checkpoint to a transformers-layout folder."""

from __future__ import annotations

from pathlib import Path

import typer

VARIANT_HELP = (
    "Preset: auto (from the file name and its keys), relative (MiDaS relative depth, 384), "
    "kitti (metres, network 352x1216 HxW, scale 0.00006016 shift 0.00579), nyu (metres, 480x640 HxW, "
    "scale 0.000305 shift 0.1378), ade20k (segmentation, 480). MiDaS v3.1 files: the release, "
    "beit_large_512, beit_large_384, beit_base_384, swin2_large_384, swin2_base_384 or swin2_tiny_256: "
    "read from the file name; a renamed Swin-V2 file needs it (its pretrained window sizes are not in the weights). "
    "Depth Anything files: da2, da2-metric-indoor (Hypersim, up to 20 m), da2-metric-outdoor (VKITTI, up to 80 m) or da1: "
    "read from the release name (depth_anything_v2_metric_hypersim_vitl.pth, ...); a renamed file needs it."
)
DTYPES = ("float32", "float16", "bfloat16")


def convert(
    src: Path = typer.Argument(..., metavar="SRC", help="Original checkpoint, e.g. dpt_large-midas-2f21e586.pt, dpt_beit_large_512.pt or depth_anything_v2_vitl.pth (renamed files work)."),
    output: Path = typer.Option(..., "-o", "--output", metavar="DIR", help="Folder to create (config.json, model.safetensors, ...): a new or empty folder, never one holding SRC or the current folder."),
    variant: str = typer.Option("auto", "--variant", metavar="NAME", help=VARIANT_HELP),
    dtype: str = typer.Option("float32", "--dtype", metavar="DTYPE", help="Weights dtype: float32, float16 or bfloat16."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Convert even if the SHA-256 does not match the release hash in the name."),
    force: bool = typer.Option(False, "--force", help="Replace OUTPUT if it is a folder an earlier dpt convert wrote (its conversion.json and only the files convert writes); any other non-empty folder or file is refused."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing but errors."),
) -> None:
    """Convert an original checkpoint (isl-org DPT 2021 and MiDaS v3.1 BEiT/Swin-V2; Depth Anything V2 and V1) into a folder that dpt and transformers both load.

    The architecture is detected from the file's keys and shapes. Files whose name carries a release hash (-2f21e586.pt) are checked against it; the SHA-256 of every file is printed and recorded in conversion.json. OUTPUT appears complete or not at all: an interrupted run removes its unfinished copy, and the next run into the same place removes one that a killed run left. Exit status: 0 done, 1 the file cannot be converted, 2 usage error.
    """
    if dtype not in DTYPES:
        raise typer.BadParameter(f"{dtype!r} is not one of {', '.join(DTYPES)}", param_hint="--dtype")
    from .loading import import_torch

    import_torch()
    import torch

    from ..interrupts import raise_if_received
    from ..text import shown
    from ..weights.convert import convert as run
    from .progress import byte_progress

    raise_if_received()  # a Ctrl-C that an import swallowed still stops us before any write

    with byte_progress(enabled=not quiet) as progress:
        report = run(src, output, variant, getattr(torch, dtype), verify=not no_verify, force=force, progress=progress)
    if quiet:
        return
    c = report.config
    typer.echo(f"sha256     {report.sha256}{'  (matches the release hash)' if report.verified_hash else ''}")
    typer.echo(f"model      {c.family} {c.task}, variant {report.variant}, {dtype}")
    if report.skipped:
        typer.echo(f"skipped    {len(report.skipped)} unused key(s): {', '.join(report.skipped)}")
    typer.echo(f"wrote      {shown(output)}")
