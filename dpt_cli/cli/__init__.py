"""The `dpt` command line: thin commands over the library. Importing this must not import torch."""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__, interrupts
from ..errors import DPTError
from ..text import shown
from . import convert, depth, info, segment
from .helptext import Command

app = typer.Typer(
    name="dpt",
    help="Dense Prediction Transformer (DPT): monocular depth estimation and ADE20K segmentation.",
    no_args_is_help=True,
    add_completion=True,  # dpt --install-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode=None,  # plain help and one-line usage errors: no boxes in pipes, logs or NO_COLOR
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


app.command("depth", epilog=depth.EXAMPLES, cls=Command)(depth.depth)
app.command("segment", epilog=segment.EXAMPLES, cls=Command)(segment.segment)
app.command("convert", cls=Command)(convert.convert)
app.command("info", cls=Command)(info.info)


def main() -> None:
    """The command line (tests call this in-process): user errors become one line on stderr and
    an exit code. SIGTERM (`kill`) stops a run exactly as Ctrl-C does, from the first instant:
    exit 130. The executable's entry point is `run`."""
    with interrupts.installed():
        try:
            app(prog_name="dpt")  # standalone: usage errors print a message and exit 2; Ctrl-C exits 130
        except DPTError as exc:
            print(f"dpt: error: {shown(exc)}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except OSError as exc:  # a path the checks did not foresee: still one line, no traceback
            where = f"{shown(exc.filename)}: " if exc.filename else ""
            print(f"dpt: error: {where}{exc.strerror or exc}", file=sys.stderr)
            sys.exit(1)
        except (KeyboardInterrupt, SystemExit) as exc:
            if isinstance(exc, SystemExit) and exc.code != 130:
                raise
            print("dpt: interrupted", file=sys.stderr)
            sys.exit(130)


def run() -> None:
    """The `dpt` executable and `python -m dpt_cli`: main(), with an interrupted run's exit status
    made exact. Python turns any KeyboardInterrupt that a library once swallowed into death by
    SIGINT at interpreter exit; a run that stopped cleanly on Ctrl-C or SIGTERM exits 130 instead,
    its work (outputs, manifest) already complete."""
    try:
        main()
    except SystemExit as exc:
        if exc.code == 130:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise
