"""The batch runner: decode in worker threads, infer in same-size batches, write in worker threads.

Memory stays bounded whatever the folder size: at most `window` images are decoded ahead, at most
`2 * batch_size` wait for a batch, and at most `window` results wait to be written. A bad input
fails alone; an interrupted run finishes the files being written (atomically) and records the rest
as interrupted.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import SEGMENTATION
from ..errors import DPTError
from ..model import DPT
from . import colormaps, writers
from .images import decode, to_uint8
from .inputs import InputItem, InputProblem
from .manifest import FAILED, INTERRUPTED, OK, PENDING, SKIPPED, FileRecord, RunInfo, write_manifest
from .outputs import Plan
from .postprocess import depth_to_size, labels_to_size
from .preprocess import Preprocess


@dataclass(frozen=True)
class Options:
    colormap: str = "turbo"
    value_range: tuple[float, float] | None = None
    alpha: float = 0.5
    batch_size: int = 1
    workers: int = 4
    skip_existing: bool = False
    overwrite: bool = False


@dataclass
class Summary:
    records: list[FileRecord] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def images_per_second(self) -> float:
        return self.count(OK) / self.seconds if self.seconds > 0 else 0.0


Report = Callable[[FileRecord], None]


@dataclass
class _Prepared:
    index: int
    tensor: torch.Tensor
    size: tuple[int, int]
    photo: Optional[np.ndarray]


class Runner:
    def __init__(self, model: DPT, preprocess: Preprocess, device: torch.device, dtype: torch.dtype, info: RunInfo, options: Options) -> None:
        self.model, self.preprocess, self.device, self.dtype = model, preprocess, device, dtype
        self.info, self.options = info, options
        self.task = model.config.task
        self.metric = model.config.is_metric

    def run(self, items: list[InputItem], plan: Plan, problems: list[InputProblem], report: Report = lambda r: None) -> Summary:
        start = time.perf_counter()
        summary = Summary()
        records = summary.records
        for p in problems:
            records.append(FileRecord(input=p.path, status=FAILED, error=f"{p.path}: {p.error}"))
            report(records[-1])
        base = len(records)
        records += [FileRecord(input=str(item.path), outputs=[str(p) for p in outs.values()]) for item, outs in zip(items, plan.outputs)]
        self._targets = [self._targets_of(outs, records[base + i], report) for i, outs in enumerate(plan.outputs)]
        todo = [i for i, targets in enumerate(self._targets) if targets]
        self._items, self._records, self._report = items, records[base:], report
        try:
            self._process(todo)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            for r in records:
                if r.status == PENDING:
                    r.status, r.error = INTERRUPTED, "run interrupted before this file was written"
            summary.seconds = time.perf_counter() - start
            if items or problems:
                try:
                    write_manifest(plan.manifest, self.info, records, summary.interrupted)
                except OSError as exc:
                    raise DPTError(f"{plan.manifest}: cannot write the run manifest ({exc.strerror or exc})") from None
        return summary

    def _targets_of(self, outs: dict[str, Path], record: FileRecord, report: Report) -> dict[str, Path]:
        """The outputs to write for one input: none when it is skipped or refused."""
        missing = {f: p for f, p in outs.items() if not p.exists()}
        if len(missing) == len(outs) or self.options.overwrite:
            return dict(outs)
        if self.options.skip_existing:
            if missing:  # a run interrupted between two outputs of this input: finish it
                return missing
            record.status = SKIPPED
        else:
            existing = next(p for p in outs.values() if p.exists())
            record.status = FAILED
            record.error = f"{existing}: output exists (use --overwrite to replace it, or --skip-existing)"
        report(record)
        return {}

    # --- the engine --------------------------------------------------------------------------

    def _process(self, todo: list[int]) -> None:
        opts = self.options
        window = max(2, opts.workers) * 2 + opts.batch_size
        needs_photo = any(f in ("side-by-side", "overlay") for outs in self._targets for f in outs)
        with ThreadPoolExecutor(opts.workers, thread_name_prefix="dpt-read") as readers, ThreadPoolExecutor(2, thread_name_prefix="dpt-write") as writers_pool:
            reading: deque[tuple[int, Future]] = deque()
            writing: deque[tuple[int, Future]] = deque()
            buckets: dict[tuple[int, int], list[_Prepared]] = {}
            queue = iter(todo)
            try:
                while True:
                    for i in queue:
                        reading.append((i, readers.submit(self._prepare, i, needs_photo)))
                        if len(reading) >= window:
                            break
                    if not reading:
                        break
                    i, future = reading.popleft()
                    try:
                        prepared = future.result()
                    except DPTError as exc:
                        self._fail(i, exc)
                        continue
                    key = tuple(prepared.tensor.shape[-2:])
                    buckets.setdefault(key, []).append(prepared)
                    if len(buckets[key]) >= opts.batch_size:
                        self._infer(buckets.pop(key), writers_pool, writing)
                    elif sum(map(len, buckets.values())) >= 2 * opts.batch_size:
                        largest = max(buckets, key=lambda k: len(buckets[k]))
                        self._infer(buckets.pop(largest), writers_pool, writing)
                    self._collect(writing, limit=window)
                for key in list(buckets):
                    self._infer(buckets.pop(key), writers_pool, writing)
                self._collect(writing, limit=0)
            except BaseException:
                for _, f in reading:
                    f.cancel()
                # in-flight writes complete (atomically) and are recorded before we stop
                self._collect(writing, limit=0)
                raise

    def _prepare(self, i: int, needs_photo: bool) -> _Prepared:
        rgb = decode(self._items[i].path)
        tensor = self.preprocess(rgb)
        return _Prepared(i, tensor, rgb.shape[:2], to_uint8(rgb) if needs_photo else None)

    def _infer(self, batch: list[_Prepared], pool: ThreadPoolExecutor, writing: deque) -> None:
        try:
            x = torch.stack([p.tensor for p in batch]).to(device=self.device, dtype=self.dtype)
            with torch.inference_mode():
                y = self.model(x)
                results = [
                    labels_to_size(y[j], p.size) if self.task == SEGMENTATION else depth_to_size(y[j], p.size)
                    for j, p in enumerate(batch)
                ]
        except (RuntimeError, ValueError) as exc:  # out of memory, unsupported dtype on device, ...
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            for p in batch:
                self._fail(p.index, DPTError(f"{self._items[p.index].path}: inference failed ({message})"))
            return
        for p, result in zip(batch, results):
            record = self._records[p.index]
            record.input_size, record.network_size = list(p.size), list(batch[0].tensor.shape[-2:])
            writing.append((p.index, pool.submit(self._write, p.index, result, p.photo)))

    def _collect(self, writing: deque, limit: int) -> None:
        """Record finished writes; block on the oldest while more than `limit` are pending."""
        while writing and (len(writing) > limit or writing[0][1].done()):
            i, future = writing.popleft()
            try:
                future.result()
            except DPTError as exc:
                self._fail(i, exc)
                continue
            except OSError as exc:
                self._fail(i, DPTError(f"{exc.filename or self._items[i].path}: cannot write ({exc.strerror or exc})"))
                continue
            except Exception as exc:  # an encoder's surprise fails this file, not the run
                self._fail(i, DPTError(f"{self._items[i].path}: cannot write outputs ({type(exc).__name__}: {exc})"))
                continue
            self._records[i].status = OK
            self._report(self._records[i])

    def _fail(self, i: int, exc: Exception) -> None:
        record = self._records[i]
        record.status, record.error = FAILED, str(exc)
        self._report(record)

    # --- encoding (worker threads) -----------------------------------------------------------

    def _write(self, i: int, result: np.ndarray, photo: np.ndarray | None) -> None:
        outs = self._targets[i]
        if self.task == SEGMENTATION:
            self._write_segmentation(i, result, photo, outs)
        else:
            self._write_depth(i, result, photo, outs)

    def _write_depth(self, i: int, depth: np.ndarray, photo: np.ndarray | None, outs: dict[str, Path]) -> None:
        lo, hi = self.options.value_range or (float(depth.min()), float(depth.max()))
        unit = writers.normalise(depth, lo, hi)
        record = self._records[i]
        record.min, record.max = lo, hi
        # pictures show nearness brightest: metric depth (metres, larger is farther) is reversed
        picture = None
        for fmt, path in outs.items():
            if fmt in ("png16", "png8"):
                writers.write_png(unit, path, 16 if fmt == "png16" else 8)
            elif fmt == "npy":
                writers.write_npy(depth, path)
            elif fmt == "pfm":
                writers.write_pfm(depth, path)
            elif fmt == "tiff":
                writers.write_tiff(depth, path)
            else:
                if picture is None:
                    picture = colormaps.apply(1.0 - unit if self.metric else unit, self.options.colormap)
                writers.write_picture(writers.side_by_side(photo, picture) if fmt == "side-by-side" else picture, path)

    def _write_segmentation(self, i: int, labels: np.ndarray, photo: np.ndarray | None, outs: dict[str, Path]) -> None:
        k = self.model.config.num_labels
        names = self.model.config.id2label
        for fmt, path in outs.items():
            if fmt == "labels":
                writers.write_labels(labels, path, k)
            else:
                writers.write_picture(writers.overlay(photo, labels, k, self.options.alpha), path)
        counts = np.bincount(labels.reshape(-1), minlength=k)
        present = np.flatnonzero(counts)
        order = present[np.argsort(-counts[present], kind="stable")]
        self._records[i].classes = [
            {"id": int(c), "name": names.get(int(c), str(c)), "fraction": round(float(counts[c]) / labels.size, 6)} for c in order
        ]
