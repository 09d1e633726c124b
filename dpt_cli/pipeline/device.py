"""--device and --dtype: what the user asked for, or the best this machine has."""

from __future__ import annotations

import os

import torch

from ..errors import UsageError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(spec: str, local_rank: int | None = None) -> torch.device:
    """auto: cuda, then mps, then cpu. A requested device that is not there is a usage error.
    Under torchrun (`local_rank` given), auto and cuda mean this rank's GPU, cuda:LOCAL_RANK."""
    spec = spec.strip().lower()
    if local_rank is not None and spec in ("auto", "cuda") and torch.cuda.is_available():
        spec = f"cuda:{local_rank}"
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r} is not available: torch sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {spec!r} is not available: there are {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps":
        if not _mps_available():
            raise UsageError(f"device {spec!r} is not available on this machine")
    elif device.type != "cpu":
        raise UsageError(f"unsupported device {spec!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def resolve_dtype(spec: str, device: torch.device, family: str = "vit") -> torch.dtype:
    """auto: float32 on CPU; float16 on GPUs. float16 runs as fast as bfloat16 on GPUs and keeps
    three more bits: on a seeded DPT-Large its depth is within 0.44 % of float32's range at most
    (0.06 % mean) against bfloat16's 3.4 % (0.41 %) (bench/bench_precision.py). The original
    isl-org code's optimised path runs these models in float16 too; an overflow would show as
    non-finite output, which fails that file with a hint rather than writing it. Swin-V2 gets
    bfloat16: MiDaS v3.1 warns that it may give non-finite values in float16."""
    if spec != "auto":
        if spec not in DTYPES:
            raise UsageError(f"unknown dtype {spec!r} (use auto, float32, float16 or bfloat16)")
        return DTYPES[spec]
    if device.type in ("cuda", "mps"):
        return torch.bfloat16 if family == "swinv2" else torch.float16
    return torch.float32


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def default_batch_size(device: torch.device) -> int:
    """1 on the CPU (larger batches do not run faster there); 32 on a GPU, which needs many
    images per pass to be busy (the runner halves it on out-of-memory)."""
    return 1 if device.type == "cpu" else 32


def default_workers() -> int:
    """One reader (and one writer) thread per usable CPU core, at most 32; under torchrun the
    cores are shared by the ranks on this machine (LOCAL_WORLD_SIZE)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(32, cores // ranks_here))
