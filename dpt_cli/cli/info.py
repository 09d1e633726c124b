"""`dpt info MODEL`: what a model is, without running it."""

from __future__ import annotations

import typer


def info(
    model: str = typer.Argument(..., help="Model folder, hub id (Intel/dpt-large) or alias (large, hybrid, large-ade)."),
) -> None:
    """Show a model's architecture, task, output meaning and parameter count (loads its weights)."""
    from ..model.summary import describe
    from ..weights import load_model

    for key, value in describe(load_model(model)).items():
        typer.echo(f"{key:<12} {value}")
