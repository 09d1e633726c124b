"""Models for the commands: any failure to resolve or load one is a usage error (exit 2)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DPTError, UsageError


def resolve_folder(spec: str) -> Path:
    """The local folder of a model folder, alias or hub id (downloading only where allowed)."""
    from ..weights import hub

    return hub.resolve(spec)


def load(folder: Path, dtype=None, device="cpu"):
    """`weights.load_model`, with every model problem (config, weights, keys, shapes) exit 2:
    the command line named a model that cannot be used."""
    from ..weights.load import load_model

    try:
        return load_model(folder, dtype=dtype, device=device)
    except UsageError:
        raise
    except DPTError as exc:
        raise UsageError(str(exc)) from None
