"""What `dpt depth` and `dpt segment` share: model, device, inputs, plan, lock, run, exit code.

Everything that can be known before the model loads is checked first (contradicting options,
missing inputs, output names, outputs that all exist, a writable and unlocked output folder), so
a usage problem costs neither seconds nor gigabytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional

import typer

from ..config import DEPTH, SEGMENTATION
from ..errors import DPTError, UsageError
from ..text import shown
from . import conflicts
from .conflicts import Asked

DEFAULT_MODELS = {DEPTH: "large", SEGMENTATION: "large-ade"}
COMMANDS = {DEPTH: "dpt depth", SEGMENTATION: "dpt segment"}
MAX_LABEL_CLASSES = 65536  # label maps are 16-bit PNGs beyond 256 classes


@dataclass(frozen=True)
class Request:
    """How to run (what to read and where to write are in `Asked`)."""

    model: Optional[str]  # folder, hub id or alias; None: the task's default
    device: str
    dtype: str
    size: Optional[tuple[int, int]]  # --size, (height, width)
    keep_aspect: bool
    quiet: bool
    options: dict  # runner.Options fields; batch_size and workers None: this machine's defaults


def execute(asked: Asked, inputs: list[str], request: Request) -> None:
    """Run one command end to end; raises typer.Exit with 0 (all ok), 1 (some failed) or 130."""
    formats = conflicts.check(asked)
    from .. import interrupts
    from ..pipeline import destination as dst
    from ..pipeline import exr

    if "exr" in formats:
        exr.require()
    if set(formats) & {"video", "video-side-by-side", "video16"}:
        from ..pipeline import video

        video.require(f"-o {shown(asked.destination.path)}")
    if asked.destination.kind == dst.STDOUT:
        if getattr(sys.stdout, "buffer", None) is None:
            raise UsageError("-o -: stdout is closed or takes no binary data; give -o FILE")
        if _stdout_is_terminal():
            raise UsageError("-o - writes binary data to stdout, which is a terminal: redirect it (> depth.png) or give -o FILE")
    if asked.reads_stdin and sys.stdin is None:
        raise UsageError("-: stdin is closed; give the inputs as arguments")
    if asked.destination.default and not request.quiet:
        print(f"dpt: writing to {dst.DEFAULT_FOLDER}{os.sep} (choose with -o)", file=sys.stderr)
    with _private_stdout_file(asked, formats) as asked:
        code = _execute(asked, formats, inputs, request)
        if asked.destination.kind == dst.STDOUT and code == 0:
            interrupts.raise_if_received()
            _copy_to_stdout(asked.destination.path)
    raise typer.Exit(code)


def _execute(asked: Asked, formats: list[str], inputs: list[str], request: Request) -> int:
    from . import loading

    loading.import_torch()

    from ..interrupts import raise_if_received
    from ..pipeline import png

    raise_if_received()  # a Ctrl-C that an import swallowed still stops us
    try:
        png.backend()  # DPT_PNG_ENCODER is checked once, not per file
    except (ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    cluster = _join(asked, request)
    try:
        return _run(asked, formats, inputs, request, cluster)
    except BaseException:
        if cluster is not None:  # the other ranks must not wait for this one
            cluster.abort()
        raise


def _run(asked: Asked, formats: list[str], inputs: list[str], request: Request, cluster) -> int:
    import torch

    from . import loading, notices, videos
    from ..pipeline.device import default_batch_size, default_workers, resolve_device, resolve_dtype
    from ..pipeline.lock import OutputLock
    from ..pipeline.manifest import FAILED, RunInfo
    from ..pipeline.runner import Options, Runner
    from .report import Reporter

    task, dest = asked.task, asked.destination
    target = resolve_device(request.device, cluster.local_rank if cluster else None)
    resolve_dtype(request.dtype, target)  # an unknown --dtype is refused before anything else
    options = dict(request.options)
    options["batch_size"] = options.get("batch_size") or default_batch_size(target)
    options["workers"] = options.get("workers") or default_workers()
    items, problems, plan, nothing_to_do = _plan(asked, inputs, options, cluster is not None)
    videos.check_space(items, plan.outputs, options, plan.manifest.parent)
    spec = request.model or DEFAULT_MODELS[task]
    if cluster and cluster.rank > 0:
        cluster.meet("resolved")  # rank 0 resolves (downloads) a hub id once, the others after it
    folder = loading.resolve_folder(spec)
    options["weights"] = loading.identity(folder)
    if cluster and cluster.rank == 0:
        cluster.meet("resolved")

    quiet = request.quiet or bool(cluster and cluster.rank > 0)  # one display: rank 0's
    counter = (lambda: cluster.count("reported", 1)) if cluster else None
    label = f"rank {cluster.rank}: " if cluster else ""
    reporter = Reporter(len(items) + len(problems), quiet, dest.kind == "stdout", counter, label)
    # a job's rank 0 locks the folder for the whole job (the others write only after it has)
    lock = OutputLock(dest.folder, shared=plan.single) if not cluster or cluster.rank == 0 else contextlib.nullcontext()
    with lock:  # output problems (the folder cannot be made, another run holds it) come first
        config = loading.read_config(folder)
        prep = _preprocess(spec, folder, config, task, request)
        precision = resolve_dtype(request.dtype, target, config.family)
        _check_task(config, spec, task)  # before the weights are read
        videos.check_model(config, spec, options)
        model = loading.load(folder, spec, dtype=precision, device=target) if items and not nothing_to_do else None
        info = RunInfo(
            task=task,
            model=spec,
            device=str(target),
            dtype=str(precision).removeprefix("torch."),
            units=_units(model.config) if model is not None else "",
            settings={"backbone": config.family, "network_size": list(prep.size), "keep_aspect": prep.keep_aspect,
                      **({"note": notices.SQUARE_NOTE} if notices.at_trained_square(config, prep) else {}), **_jsonable(options),
                      **({"rank": cluster.rank, "world_size": cluster.world} if cluster else {})},
            command=["dpt", *sys.argv[1:]],
        )
        if model is not None:
            reporter.header(f"model {shown(spec)} ({info.units}), device {info.device}, dtype {info.dtype}")
            notices.warn(reporter, model, formats, precision == torch.float16 and target.type == "cpu", prep)
        runner = Runner(model, prep, target, precision, info, Options(**options), reporter.note, cluster)
        torch.set_grad_enabled(False)
        with reporter:
            summary = runner.run(items, plan, problems, reporter.file_done)
    reporter.summary(summary, None if dest.kind == "stdout" else plan.manifest, _resume_hint(asked, options))
    if summary.profile:
        reporter.profile(summary.profile)
    code = 130 if summary.interrupted else 1 if summary.count(FAILED) else 0
    return code if cluster is None else _agree(cluster, summary, code, reporter)


def _join(asked: Asked, request: Request):
    """This rank's Cluster when launched by torchrun (else None); what a job cannot do refused."""
    import torch

    from ..pipeline import distributed

    if not distributed.launched():
        return None
    if asked.destination.kind == "stdout":
        raise UsageError("-o - under torchrun: many processes cannot share stdout; give -o DIR")
    if asked.value_range == "auto":
        raise UsageError("--range auto needs one process to see every photo: run it without torchrun, or give --range MIN:MAX")
    if asked.reads_stdin:
        raise UsageError("- under torchrun: every rank would read its own part of stdin; give folders, files or patterns")
    wants = request.device.strip().lower()
    if wants.startswith("cuda:"):
        raise UsageError(f"--device {wants} under torchrun: each rank uses cuda:LOCAL_RANK; give --device auto or cuda")
    return distributed.join(cuda=torch.cuda.is_available() and (wants == "auto" or wants.startswith("cuda")))


def _agree(cluster, summary, code: int, reporter) -> int:
    """Meet the other ranks and exit as the job does; rank 0 says what the whole job did. An
    interrupted rank leaves at once (torchrun's SIGTERM means go), telling the others."""
    from ..pipeline import distributed
    from ..pipeline.manifest import FAILED, OK, SKIPPED

    if code == 130:
        cluster.abort()
        return code
    for name, status in (("ok", OK), ("skipped", SKIPPED), ("failed", FAILED)):
        cluster.count(name, summary.count(status))
    code = cluster.agree(code)
    if cluster.rank == 0:
        done, elapsed = cluster.count("ok"), reporter.elapsed
        reporter.header(
            f"job of {cluster.world} ranks: done {done}, skipped {cluster.count('skipped')}, failed {cluster.count('failed')} "
            f"in {elapsed:.1f} s ({done / elapsed:.2f} images/s), exit {code}"
        )
    cluster.meet("exit")  # after rank 0's last word: no rank exits (and gets the others stopped) before
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the status is agreed: a late stop must not change it
    distributed.leave()
    return code


def _plan(asked: Asked, inputs: list[str], options: dict, distributed: bool):
    """(items, problems, plan, nothing to do): the inputs (a clip's frames each an input) and
    their outputs, every usage problem about them raised now."""
    from ..pipeline import outputs
    from ..pipeline.clips import expand_clips
    from ..pipeline.inputs import expand
    from ..pipeline.manifest import recorded_outputs
    from .videos import check_inputs

    dest = asked.destination
    # earlier outputs recorded in this folder are never inputs (-o may be the input folder)
    exclude = (*((dest.path,) if dest.kind == "folder" else ()), *recorded_outputs(dest.folder / outputs.MANIFEST))
    items, problems = expand(inputs, asked.recursive, sys.stdin, exclude, asked.follow_symlinks, asked.null)
    _refuse_missing(problems)
    items, problems = expand_clips(items, problems)
    check_inputs(items, problems, options, distributed)
    if not items and not problems:
        raise UsageError("no input images found in " + ", ".join(shown(i) for i in inputs))
    plan = outputs.plan(asked.task, items, dest, asked.formats, asked.bits or 16, asked.side_by_side, asked.overlay)
    return items, problems, plan, _check_existing(plan, asked)


def _preprocess(spec: str, folder: Path, config, task: str, request: Request):
    """The official models get the original preprocessing, and so do folders `dpt convert` wrote
    from DINOv2 originals (transformers' processor cannot say 'lower bound'); other folders follow
    their own config."""
    from ..pipeline import preprocess
    from ..weights import hub

    original = hub.is_official(spec) or (config.family == "dinov2" and (folder / "conversion.json").is_file())
    if config.family == "dinov2" and not config.is_depth_anything and (request.size is not None or not request.keep_aspect):
        # no option is silently ignored: this model is never resized
        raise UsageError(f"--size and --no-keep-aspect do not apply to {shown(spec)}: it runs each photo at its own size, "
                         "padded to multiples of 14; drop them")
    try:
        prep = preprocess.original(task, config) if original else preprocess.from_folder(folder, task, config)
    except DPTError as exc:
        raise UsageError(str(exc)) from None
    return preprocess.with_options(prep, request.size, False if not request.keep_aspect else None)


def _refuse_missing(problems) -> None:
    """Inputs typed on the command line that do not exist (a typo, a pattern matching nothing):
    a usage error, before any work."""
    missing = [p for p in problems if p.missing]
    if missing:
        more = f" (and {len(missing) - 1} more input(s) not found)" if len(missing) > 1 else ""
        raise UsageError(f"{shown(missing[0].path)}: {missing[0].error}{more}")


def _check_existing(plan, asked: Asked) -> bool:
    """True when there is nothing to do (every output exists and --skip-existing); UsageError
    when every output exists and neither --overwrite nor --skip-existing says what to do."""
    if not plan.outputs or asked.overwrite:
        return False
    if not all(os.path.exists(p) for outs in plan.outputs for p in outs.values()):
        return False
    if asked.skip_existing:
        return True
    some = next(p for outs in plan.outputs for p in outs.values())
    if len(plan.outputs) == 1:
        raise UsageError(f"{shown(some)}: already exists; --overwrite replaces it, --skip-existing keeps it")
    raise UsageError(f"all {len(plan.outputs)} inputs' outputs already exist (e.g. {shown(some)}); --overwrite replaces them, --skip-existing keeps them")


def _resume_hint(asked: Asked, options: dict) -> str | None:
    """How to finish an interrupted run, as the summary says it."""
    if asked.destination.kind == "stdout":
        return None
    instead = " in place of --overwrite" if asked.overwrite else ""
    return f"run the same command with --skip-existing{instead} to finish the rest"


def _check_task(config, spec: str, task: str) -> None:
    """The model must do what the command does (read from its config.json)."""
    if config.task != task:
        other = DEPTH if task == SEGMENTATION else SEGMENTATION
        raise UsageError(f"model {shown(spec)} is a {config.task} model; use `{COMMANDS[other]}` for it")
    if task == SEGMENTATION and config.num_labels > MAX_LABEL_CLASSES:
        raise UsageError(f"model {shown(spec)} has {config.num_labels} classes; label maps hold at most {MAX_LABEL_CLASSES} (16-bit PNG)")


@contextmanager
def _private_stdout_file(asked: Asked, formats: list[str]) -> Iterator[Asked]:
    """For `-o -`: the run writes into a private temporary folder, streamed out afterwards."""
    from ..pipeline import destination as dst
    from ..pipeline.outputs import DEPTH_SUFFIXES

    if asked.destination.kind != dst.STDOUT:
        yield asked
        return
    folder = tempfile.mkdtemp(prefix="dpt-stdout-")
    try:
        name = Path(folder) / ("stdout" + DEPTH_SUFFIXES.get(formats[0], ".png"))
        yield replace(asked, destination=dst.Destination(dst.STDOUT, name))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stdout_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _copy_to_stdout(path: Path) -> None:
    try:
        sys.stdout.flush()
        with open(path, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise DPTError("-o -: stdout was closed (broken pipe) before the whole output was written") from None


def _units(config) -> str:
    if config.task == SEGMENTATION:
        return "class ids (0-based id2label)"
    return "metres" if config.is_metric else "inverse relative depth (larger is nearer)"


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
