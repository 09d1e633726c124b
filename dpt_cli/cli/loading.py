"""Models for the commands: any failure to resolve or load one is a usage error (exit 2)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DPTError, UsageError


def resolve_folder(spec: str) -> Path:
    """The local folder of a model folder, alias or hub id (downloading only where allowed)."""
    from ..weights import hub

    return hub.resolve(spec)


def identity(folder: Path) -> str:
    """A short fingerprint of a model folder's files (names, sizes, times): changed weights change it."""
    import os

    from ..pipeline.autorange import fingerprint

    try:
        files = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_file())
    except OSError:
        files = []
    return fingerprint(os.path.realpath(folder), files)


def load(folder: Path, spec: str, dtype=None, device="cpu"):
    """`weights.load_model` for the folder that `spec` resolved to (an official release runs with the
    original numerics), with every model problem (config, weights, keys, shapes) exit 2: the
    command line named a model that cannot be used."""
    from ..weights.hub import is_official
    from ..weights.load import load_model

    try:
        return load_model(folder, dtype=dtype, device=device, official=spec if is_official(spec) else False)
    except UsageError:
        raise
    except DPTError as exc:
        raise UsageError(str(exc)) from None


def read_config(folder: Path):
    """The folder's config.json, parsed and checked (a usage error when it cannot be used)."""
    from ..config import DPTConfig

    try:
        return DPTConfig.from_json_file(folder / "config.json")
    except UsageError:
        raise
    except DPTError as exc:
        raise UsageError(str(exc)) from None


def import_torch() -> None:
    """Import torch and the modules built on it with Ctrl-C and SIGTERM held back until done.

    A KeyboardInterrupt raised while torch's import runs Python code from C++ (pybind11) aborts
    the whole process ("terminate called after throwing an instance of error_already_set") instead
    of stopping it; held back, the signal is delivered right after the import and stops us cleanly.
    """
    from ..interrupts import deferred

    with deferred():
        import torch  # noqa: F401

        from ..pipeline import runner  # noqa: F401
        from ..weights import load  # noqa: F401
