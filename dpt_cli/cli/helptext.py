"""Plain `--help` for the commands: arguments shown by name (`INPUT...`), not by Python type.

Typer shows an argument as `{INPUT}... <list[str]>`, which reads as if braces and a type were to
be typed; options already show their metavar (PATH, N, ...) and flags nothing.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class Command(TyperCommand):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return ["[OPTIONS]", *(_name(p) for p in self.get_params(ctx) if p.param_type_name == "argument")]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        args = [(_name(p), getattr(p, "help", "") or "") for p in params if p.param_type_name == "argument"]
        opts = [rv for p in params if p.param_type_name == "option" and (rv := p.get_help_record(ctx))]
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _name(param: Any) -> str:
    name = param.metavar or (param.name or "").upper()
    return name if name.endswith("...") or param.nargs == 1 else name + "..."
