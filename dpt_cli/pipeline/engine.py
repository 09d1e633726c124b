"""The device side of a run: network inputs, forward passes, results on their way to the host.

The same computation in one of two placements (every value identical; tests run both on CPU):
- host (CPU inference): readers preprocess photos in parallel threads, the main thread only runs
  the network, writer threads resize each result back to its photo's size;
- device (GPU): readers only decode; the main thread uploads uint8 pixels, preprocesses, runs
  the network, resizes back, takes min/max and quantises PNG maps on the device, then starts
  copies into pinned host memory. The main thread does not wait for the device (constants and
  resampling taps are uploaded once, not per photo): each writer thread waits for its own
  photo's copy, so the next batch is queued while this one computes.
A non-finite output is found on the device too and fails its photo in the writer thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..config import SEGMENTATION
from ..errors import DPTError
from ..model import DPT
from .encoding import DepthMap
from .postprocess import depth_to_size, labels_to_size, quantise_on_device
from .preprocess import Preprocess
from .profile import Profile
from .transfer import to_host

PNG_BITS = {"png16": 16, "png8": 8}
Result = DepthMap | np.ndarray  # a depth map, or (H, W) class ids


@dataclass
class Job:
    """One photo on its way through the network."""

    name: str
    size: tuple[int, int]  # the photo's (H, W)
    net: tuple[int, int]  # its network input's (h, w)
    pixels: Optional[np.ndarray | torch.Tensor]  # (H, W, 3) uint8 or float32, until preprocessed
    tensor: Optional[torch.Tensor] = None  # (3, h, w) float32, when a reader preprocessed it


class NonFiniteOutput(DPTError):
    pass


@dataclass(frozen=True)
class Settings:
    task: str
    formats: frozenset[str]  # every format any photo of the run writes
    value_range: tuple[float, float] | None = None
    on_device: bool = False  # the device placement (the default for every device but the CPU)
    compile: bool = False
    batch_size: int = 1


class Engine:
    def __init__(self, model: DPT, preprocess: Preprocess, device: torch.device, dtype: torch.dtype, settings: Settings, profile: Profile, notice: Callable[[str], None] = lambda s: None) -> None:
        self.model, self.preprocess, self.device, self.dtype = model, preprocess, device, dtype
        self.settings, self.profile, self.notice = settings, profile, notice
        self.batch_size = settings.batch_size  # lowered for good when the device runs out of memory
        use_device(device)
        if device.type == "cpu" and dtype == torch.float32:
            # oneDNN's float32 convolutions run ~10% faster over the whole DPT-Large forward in
            # channels-last layout (3.32 s -> 2.99 s at 384x384 on 2 cores); in bfloat16 they
            # run slower (1.80 s -> 2.39 s), so only here
            model.neck.to(memory_format=torch.channels_last)
            model.head.to(memory_format=torch.channels_last)
        self.net = _compiled(model, device, settings.batch_size) if settings.compile else model
        self._shapes: set[tuple[int, ...]] = set()
        self._bits = tuple(sorted({PNG_BITS[f] for f in settings.formats if f in PNG_BITS}))
        self._needs_float = any(f not in PNG_BITS for f in settings.formats)

    def prepare(self, pixels: np.ndarray, name: str) -> Job:
        """In a reader thread: a decoded photo -> its job (preprocessed here unless on the device)."""
        net = self.preprocess.check(*pixels.shape[:2], name=name)
        job = Job(name, tuple(pixels.shape[:2]), net, pixels)
        if self.settings.on_device:
            # copied here, in a reader thread, not on the main thread that feeds the device: into
            # pinned memory for CUDA (the upload is then asynchronous), else into writable memory
            # (torch does not wrap Pillow's read-only arrays)
            job.pixels = _staged(pixels, self.device)
        else:
            with self.profile.stage("preprocess"):
                job.tensor, job.pixels = self.preprocess(pixels, name=name), None
        return job

    def infer(self, jobs: list[Job]) -> list[Callable[[], Result]]:
        """On the main thread: one forward pass for same-network-size jobs; per job, a call for a
        writer thread that returns its result (or raises NonFiniteOutput)."""
        with self.profile.stage("preprocess"):
            x = torch.stack([self._input(j) for j in jobs]).to(self.dtype)
        with self.profile.stage("forward"):
            y = self._forward(x)
            self._sync()
        # NaN and infinity counts per photo, at network resolution, travel with the result
        counts = torch.stack([torch.isnan(y).flatten(1).sum(1), torch.isinf(y).flatten(1).sum(1)], 1)
        if not self.settings.on_device:
            counts = counts.cpu().numpy()
            return [self._on_host(y[j], job, counts[j], y[j].numel()) for j, job in enumerate(jobs)]
        with self.profile.stage("postprocess"):
            fetches = [self._on_device(y[j], job, counts[j], y[j].numel()) for j, job in enumerate(jobs)]
            self._sync()
        return fetches

    # --- inputs and the network ------------------------------------------------------------

    def _input(self, job: Job) -> torch.Tensor:
        if job.tensor is not None:  # preprocessed by a reader (the host placement)
            tensor, job.tensor = job.tensor, None
            return tensor.to(self.device)
        pixels, job.pixels = job.pixels, None
        # asynchronous only from pinned memory: from pageable memory the source may be freed
        # before the copy reads it (MPS), and CUDA would copy synchronously anyway
        return self.preprocess(pixels.to(self.device, non_blocking=pixels.is_pinned()), name=job.name)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on x (B, 3, h, w); on out-of-memory, halves the batch size for the rest of
        the run and retries in parts. With --compile, batches are padded to one size per network
        size so each size compiles once."""
        n = x.shape[0]
        if n > self.batch_size:
            return torch.cat([self._forward(part) for part in x.split(self.batch_size)])
        padded = x
        if self.settings.compile and n < self.batch_size:
            padded = torch.cat([x, x.new_zeros((self.batch_size - n, *x.shape[1:]))])
        if self.settings.compile and tuple(padded.shape) not in self._shapes:
            self._shapes.add(tuple(padded.shape))
            self.notice(f"compiling for {padded.shape[0]} x {padded.shape[2]}x{padded.shape[3]} inputs (once per size; slow)")
        try:
            with torch.inference_mode():
                y = self.net(padded)[:n]
            # CUDA-graph outputs are overwritten by the next replay: keep a copy
            return y.clone() if self.settings.compile else y
        except Exception as exc:
            if not _out_of_memory(exc) or padded.shape[0] == 1:
                raise
        # out of the handler: its traceback holds the failed pass's activations
        self.batch_size = max(1, padded.shape[0] // 2)
        _free(self.device)
        self.notice(f"out of memory at batch {padded.shape[0]}: batch size now {self.batch_size}")
        return self._forward(x)

    def _padded(self, job: Job) -> tuple[int, int] | None:
        """The network input a photo was centre-padded to (DINOv2-DPT), else None (it was resized)."""
        return job.net if self.preprocess.pads else None

    def _sync(self) -> None:
        if self.profile.enabled and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # --- results -----------------------------------------------------------------------------

    def _on_host(self, y: torch.Tensor, job: Job, counts: np.ndarray, total: int) -> Callable[[], Result]:
        def fetch() -> Result:
            _check_finite(job, counts, total, self.dtype)
            with self.profile.stage("postprocess"):
                if self.settings.task == SEGMENTATION:
                    return labels_to_size(y, job.size)
                return DepthMap.of(depth_to_size(y, job.size, back=self.preprocess.back, padded=self._padded(job)), self.settings.value_range)

        return fetch

    def _on_device(self, y: torch.Tensor, job: Job, counts: torch.Tensor, total: int) -> Callable[[], Result]:
        if self.settings.task == SEGMENTATION:
            wait = to_host([counts, labels_to_size(y, job.size, on_device=True)])

            def labels() -> Result:
                counts_h, ids = wait()
                _check_finite(job, counts_h, total, self.dtype)
                return ids

            return labels
        depth = depth_to_size(y, job.size, on_device=True, back=self.preprocess.back, padded=self._padded(job))
        bounds, maps = quantise_on_device(depth, self.settings.value_range, self._bits)
        wait = to_host([counts, bounds, *maps.values(), *([depth] if self._needs_float else [])])

        bits = tuple(maps)  # not the dict: the closure would hold its device maps until written

        def depth_map() -> Result:
            counts_h, bounds_h, *rest = wait()
            _check_finite(job, counts_h, total, self.dtype)
            quantised = dict(zip(bits, rest))
            return DepthMap(rest[-1] if self._needs_float else None, float(bounds_h[0]), float(bounds_h[1]), quantised)

        return depth_map


def _staged(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) pixels as a CPU tensor ready to upload to `device`."""
    if device.type != "cuda":
        return torch.from_numpy(np.require(pixels, requirements=["C", "W"]))
    dtype = torch.uint8 if pixels.dtype == np.uint8 else torch.float32
    staged = torch.empty(pixels.shape, dtype=dtype, pin_memory=True)
    staged.numpy()[...] = pixels
    return staged


def _check_finite(job: Job, counts: np.ndarray, total: int, dtype: torch.dtype) -> None:
    nan, inf = int(counts[0]), int(counts[1])
    if nan or inf:
        hint = " (float16 overflows: try --dtype bfloat16 or float32)" if dtype == torch.float16 else ""
        raise NonFiniteOutput(f"{job.name}: the model's output has {nan:,} NaN and {inf:,} infinite value(s) of {total:,}: nothing written{hint}")


def _compiled(model: DPT, device: torch.device, batch_size: int):
    # CUDA graphs (reduce-overhead) pay at small batches, where launch overhead dominates
    mode = "reduce-overhead" if device.type == "cuda" and batch_size <= 8 else None
    return torch.compile(model, dynamic=False, mode=mode)


def use_device(device: torch.device) -> None:
    """Make cuda:N this thread's current GPU: pinned memory, events and streams otherwise go to GPU 0."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def _out_of_memory(exc: Exception) -> bool:
    """CUDA's OutOfMemoryError (torch >= 2.5 also as torch.OutOfMemoryError); MPS and older
    builds say so in a RuntimeError."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
