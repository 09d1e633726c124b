"""`dpt segment`: photos to ADE20K label maps (palette PNGs of class ids) and overlays."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import options as o
from .conflicts import Asked
from .run import Request, execute

EXAMPLES = """\b
Examples:
  dpt segment street.jpg -o street.png --overlay   labels + street.overlay.png
  dpt segment photos/ -r -o labels/
  cat street.jpg | dpt segment - -o - > labels.png
"""


def segment(
    inputs: o.Inputs,
    output: o.Output = None,
    model: Annotated[Optional[str], typer.Option("-m", "--model", metavar="MODEL", help="Folder, hub id, or alias: large-ade (default).", show_default=False)] = None,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write the photo blended with the class colours (NAME.overlay.png).")] = False,
    alpha: Annotated[Optional[float], typer.Option("--alpha", metavar="0-1", min=0.0, max=1.0, help="Weight of the class colours in the overlay (default 0.5).", show_default=False)] = None,
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
    """Segment images into the model's classes (ADE20K: 150).

    Each label map is a palette PNG whose pixel values are the class ids (0-based, as in the model's id2label) and whose palette holds the ADE20K colours: one file that is both the raw labels and a viewable picture. The dpt-run.json manifest lists the classes present in each image with their pixel fractions. Exit status: 0 all done, 1 some inputs failed, 2 usage error (also: a model that cannot be used, or another run writing into the same -o), 130 interrupted.
    """
    asked = Asked(
        "segmentation", o.destination(output, "segmentation"), [], overlay=overlay, alpha=alpha, skip_existing=skip_existing,
        overwrite=overwrite, recursive=recursive, follow_symlinks=follow_symlinks, null=null, reads_stdin="-" in inputs,
    )
    options = dict(
        alpha=0.5 if alpha is None else alpha, batch_size=batch_size, workers=workers, compile=compile_model, profile=profile,
        skip_existing=skip_existing, overwrite=overwrite,
    )
    execute(asked, inputs, Request(model, device, dtype, o.parse_size(size), not no_keep_aspect, quiet, options))
