"""Reading and writing weight files safely: safetensors, or pickles restricted to plain tensors."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from ..errors import DPTError

SAFETENSORS = "model.safetensors"
PICKLED = "pytorch_model.bin"


class WeightsError(DPTError):
    """A weights file that cannot be read or is not what it claims to be."""


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-mapped read: tensors are backed by the file's pages until they are touched."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None


def read_pickled(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True: refuses anything that needs arbitrary code to unpickle."""
    try:
        # mmap (no copy into memory) works only for the zip format; legacy pickles are read whole.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise WeightsError(f"{path}: refused: the file needs arbitrary code to unpickle ({first})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a flat dict of tensors")
    return state


def read_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a transformers-layout folder: model.safetensors, else pytorch_model.bin."""
    if (folder / SAFETENSORS).is_file():
        return read_safetensors(folder / SAFETENSORS)
    if (folder / PICKLED).is_file():
        return read_pickled(folder / PICKLED)
    raise WeightsError(f"{folder}: no {SAFETENSORS} or {PICKLED} in the model folder")


def write_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt", **(metadata or {})})
