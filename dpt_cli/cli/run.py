"""What `dpt depth` and `dpt segment` share: model, device, inputs, plan, lock, run, exit code.

Everything that can be known before the model loads is checked first (inputs, output names, a
writable and unlocked output folder), so a usage problem costs neither seconds nor gigabytes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..config import DEPTH, SEGMENTATION
from ..errors import DPTError, UsageError
from ..text import shown

DEFAULT_MODELS = {DEPTH: "large", SEGMENTATION: "large-ade"}
COMMANDS = {DEPTH: "dpt depth", SEGMENTATION: "dpt segment"}
MAX_LABEL_CLASSES = 65536  # label maps are 16-bit PNGs beyond 256 classes


def execute(
    task: str,
    inputs: list[str],
    output: str,
    model_spec: Optional[str],
    *,
    recursive: bool,
    follow_symlinks: bool,
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
    from . import loading

    loading.import_torch()
    import torch

    from ..interrupts import raise_if_received
    from ..pipeline import outputs, png, preprocess
    from ..pipeline.device import default_batch_size, default_workers, resolve_device, resolve_dtype
    from ..pipeline.inputs import expand
    from ..pipeline.lock import OutputLock
    from ..pipeline.manifest import FAILED, RunInfo, recorded_outputs
    from ..pipeline.runner import Options, Runner
    from ..weights import hub
    from .report import Reporter

    raise_if_received()  # a Ctrl-C that an import swallowed still stops us
    try:
        png.backend()  # DPT_PNG_ENCODER is checked once, not per file
    except (ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    if not output:
        raise UsageError("-o: an empty path names no file or folder (for the current folder, say -o .)")
    output = Path(output)
    target = resolve_device(device)
    precision = resolve_dtype(dtype, target)
    options_kwargs = dict(options_kwargs)
    options_kwargs["batch_size"] = options_kwargs.get("batch_size") or default_batch_size(target)
    options_kwargs["workers"] = options_kwargs.get("workers") or default_workers()
    spec = model_spec or DEFAULT_MODELS[task]
    folder = loading.resolve_folder(spec)
    official = spec in hub.ALIASES or spec.startswith("Intel/dpt-")
    try:
        prep = preprocess.original(task) if official else preprocess.from_folder(folder, task)
    except DPTError as exc:
        raise UsageError(str(exc)) from None
    prep = preprocess.with_options(prep, size, False if not keep_aspect else None)

    single = outputs.is_single_file(output)
    out_dir = output.parent if single else output
    # earlier outputs recorded in this folder are never inputs (-o may be the input folder)
    exclude = (*(() if single else (output,)), *recorded_outputs(out_dir / outputs.MANIFEST))
    items, problems = expand(inputs, recursive, sys.stdin, exclude, follow_symlinks)
    if not items and not problems:
        raise UsageError("no input images found in " + ", ".join(shown(i) for i in inputs))
    plan = outputs.plan(task, items, output, formats, bits, side_by_side, overlay)

    with OutputLock(out_dir, shared=single):
        model = _load_checked(loading, folder, spec, task, precision, target) if items else None
        info = RunInfo(
            task=task,
            model=spec,
            device=str(target),
            dtype=str(precision).removeprefix("torch."),
            units=_units(model.config) if model is not None else "",
            settings={"network_size": list(prep.size), "keep_aspect": prep.keep_aspect, **_jsonable(options_kwargs)},
        )
        reporter = Reporter(total=len(items) + len(problems), quiet=quiet)
        if model is not None:
            reporter.header(f"model {shown(spec)} ({info.units}), device {info.device}, dtype {info.dtype}")
        runner = Runner(model, prep, target, precision, info, Options(**options_kwargs), reporter.note)
        torch.set_grad_enabled(False)
        with reporter:
            summary = runner.run(items, plan, problems, reporter.file_done)
    reporter.summary(summary)
    if summary.profile:
        reporter.profile(summary.profile)
    if summary.interrupted:
        raise typer.Exit(130)
    raise typer.Exit(1 if summary.count(FAILED) else 0)


def _load_checked(loading, folder: Path, spec: str, task: str, precision, target):
    model = loading.load(folder, dtype=precision, device=target)
    if model.config.task != task:
        other = DEPTH if task == SEGMENTATION else SEGMENTATION
        raise UsageError(f"model {shown(spec)} is a {model.config.task} model; use `{COMMANDS[other]}` for it")
    if task == SEGMENTATION and model.config.num_labels > MAX_LABEL_CLASSES:
        raise UsageError(f"model {shown(spec)} has {model.config.num_labels} classes; label maps hold at most {MAX_LABEL_CLASSES} (16-bit PNG)")
    return model


def _units(config) -> str:
    if config.task == SEGMENTATION:
        return "class ids (0-based id2label)"
    return "metres" if config.is_metric else "inverse relative depth (larger is nearer)"


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
