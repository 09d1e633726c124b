"""Reading and writing weight files safely: safetensors, or pickles restricted to plain tensors."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import torch
import json
from typing import Iterable

from safetensors import SafetensorError
from safetensors.torch import safe_open

from ..errors import DPTError
from ..text import first_line

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


def load_pickled(path: Path) -> object:
    """torch.load with weights_only=True: refuses anything that needs arbitrary code to unpickle."""
    try:
        # mmap (no copy into memory) works only for the zip format; legacy pickles are read whole.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        first = first_line(exc) if str(exc).strip() else "unsafe content"
        raise WeightsError(f"{path}: refused: the file needs arbitrary code to unpickle ({first})") from None
    except Exception as exc:  # truncated, not a pickle at all, corrupt zip, ...: all one answer
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc)})") from None


def read_pickled(path: Path) -> dict[str, torch.Tensor]:
    state = load_pickled(path)
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


_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(
    tensors: Iterable[tuple[str, torch.Tensor]],
    path: Path,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
    progress=None,
) -> None:
    """Write a safetensors file one tensor at a time: memory stays at about the largest tensor.

    `tensors` is iterated twice (header, then data), so pass a list or another re-iterable.
    `dtype` casts floating-point tensors as they are written. `progress(done_bytes, total_bytes)`
    is called after each tensor.
    """

    def target(t: torch.Tensor) -> torch.dtype:
        return dtype if dtype is not None and t.is_floating_point() else t.dtype

    header: dict[str, object] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for name, t in tensors:
        size = t.numel() * target(t).itemsize
        header[name] = {"dtype": _DTYPES[target(t)], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
    done = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, t in tensors:
            data = t.detach().to(target(t)).contiguous().reshape(-1).view(torch.uint8)
            f.write(memoryview(data.numpy()))
            done += data.numel()
            if progress is not None:
                progress(done, offset)
