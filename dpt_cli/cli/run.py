"""What `dpt depth` and `dpt segment` share: model, device, inputs, plan, run, exit code."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from ..config import DEPTH, SEGMENTATION
from ..errors import UsageError

DEFAULT_MODELS = {DEPTH: "large", SEGMENTATION: "large-ade"}
COMMANDS = {DEPTH: "dpt depth", SEGMENTATION: "dpt segment"}


def execute(
    task: str,
    inputs: list[str],
    output: Path,
    model_spec: Optional[str],
    *,
    recursive: bool,
    device: str,
    dtype: str,
    size: Optional[tuple[int, int]],
    keep_aspect: bool,
    formats: list[str],
    bits: int,
    side_by_side: bool,
    overlay: bool,
    options_kwargs: dict,
    quiet: bool,
) -> None:
    """Run one command end to end; raises typer.Exit with 0 (all ok), 1 (some failed) or 130."""
    import torch

    from ..pipeline import outputs, preprocess
    from ..pipeline.device import resolve_device, resolve_dtype
    from ..pipeline.inputs import expand
    from ..pipeline.manifest import FAILED, RunInfo
    from ..pipeline.runner import Options, Runner
    from ..weights import hub
    from ..weights.load import load_model
    from .report import Reporter

    target = resolve_device(device)
    precision = resolve_dtype(dtype, target)
    spec = model_spec or DEFAULT_MODELS[task]
    folder = hub.resolve(spec)
    model = load_model(folder, dtype=precision, device=target)
    if model.config.task != task:
        other = DEPTH if task == SEGMENTATION else SEGMENTATION
        raise UsageError(f"model {spec} is a {model.config.task} model; use `{COMMANDS[other]}` for it")
    official = spec in hub.ALIASES or spec.startswith("Intel/dpt-")
    prep = preprocess.original(task) if official else preprocess.from_folder(folder, task)
    prep = preprocess.with_options(prep, size, False if not keep_aspect else None)

    exclude = (output,) if not outputs.is_single_file(output) else ()
    items, problems = expand(inputs, recursive, sys.stdin, exclude)
    if not items and not problems:
        raise UsageError("no input images found in " + ", ".join(inputs))
    plan = outputs.plan(task, items, output, formats, bits, side_by_side, overlay)
    info = RunInfo(
        task=task,
        model=spec,
        device=str(target),
        dtype=str(precision).removeprefix("torch."),
        units=_units(model.config),
        settings={"network_size": list(prep.size), "keep_aspect": prep.keep_aspect, **_jsonable(options_kwargs)},
    )
    reporter = Reporter(total=len(items) + len(problems), quiet=quiet)
    reporter.header(f"model {spec} ({info.units}), device {info.device}, dtype {info.dtype}")
    runner = Runner(model, prep, target, precision, info, Options(**options_kwargs))
    torch.set_grad_enabled(False)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a run as cleanly as Ctrl-C
    try:
        with reporter:
            summary = runner.run(items, plan, problems, reporter.file_done)
    finally:
        signal.signal(signal.SIGTERM, previous)
    reporter.summary(summary)
    if summary.interrupted:
        raise typer.Exit(130)
    raise typer.Exit(1 if summary.count(FAILED) else 0)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _units(config) -> str:
    if config.task == SEGMENTATION:
        return "class ids (0-based id2label)"
    return "metres" if config.is_metric else "inverse relative depth (larger is nearer)"


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
