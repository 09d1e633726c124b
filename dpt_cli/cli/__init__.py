"""The `dpt` command line: thin commands over the library. Importing this must not import torch."""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import DPTError
from . import convert, depth, info, segment

app = typer.Typer(
    name="dpt",
    help="Dense Prediction Transformer (DPT): monocular depth estimation and ADE20K segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dpt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Dense Prediction Transformer (DPT): monocular depth estimation and ADE20K segmentation.

    Models are transformers-layout folders (config.json + model.safetensors), hub ids such as
    Intel/dpt-large, or the aliases large, hybrid and large-ade.
    """


app.command("depth")(depth.depth)
app.command("segment")(segment.segment)
app.command("convert")(convert.convert)
app.command("info")(info.info)


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and an exit code."""
    try:
        app()  # standalone: usage errors print a message and exit 2
    except DPTError as exc:
        print(f"dpt: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("dpt: interrupted", file=sys.stderr)
        sys.exit(130)
