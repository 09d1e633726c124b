"""`dpt info MODEL`: what a model is, without running it."""

from __future__ import annotations

import typer


def info(
    model: str = typer.Argument(..., metavar="MODEL", help="Model folder, hub id (Intel/dpt-large) or alias (large, hybrid, large-ade, beit-large-512, swinv2-tiny-256, ...)."),
) -> None:
    """Show a model's architecture, task, output meaning and parameter count (loads its weights).

    Exit status: 0, or 2 when MODEL cannot be found or used.
    """
    from . import loading

    loading.import_torch()
    from ..model.summary import describe
    from ..text import shown

    for key, value in describe(loading.load(loading.resolve_folder(model), model)).items():
        typer.echo(f"{key:<12} {shown(value)}")
