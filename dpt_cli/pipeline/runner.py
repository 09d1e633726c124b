"""The batch runner: decode in worker threads, infer in same-size batches, write in worker threads.

Memory stays bounded whatever the folder size and the photos' sizes: at most `window` images are
read ahead, and the photos in flight (from decoding to written) hold at most `pixel_budget`
pixels between them (see `budget`); a photo larger than that runs alone. A bad input fails alone.
The manifest always matches the disk: each writer thread marks its input done only after its last
file is renamed into place, and an interruption (Ctrl-C, SIGTERM, any number of times) lets the
writes in flight finish before the rest are recorded as interrupted.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import SEGMENTATION
from ..errors import DPTError
from ..interrupts import interrupt_once
from ..model import DPT
from ..text import first_line, shown
from .budget import PixelBudget, Stopped
from .encoding import write_depth, write_segmentation
from .images import decode_image, to_uint8
from .inputs import InputItem, InputProblem
from .manifest import FAILED, INTERRUPTED, OK, PENDING, SKIPPED, FileRecord, RunInfo, write_manifest
from .outputs import Plan, name_problem
from .postprocess import depth_to_size, labels_to_size
from .preprocess import Preprocess

PIXEL_BUDGET = 64_000_000  # photos in flight, in pixels: ~20 bytes each at the peak of their stages


@dataclass(frozen=True)
class Options:
    colormap: str = "turbo"
    value_range: tuple[float, float] | None = None
    alpha: float = 0.5
    batch_size: int = 1
    workers: int = 4
    skip_existing: bool = False
    overwrite: bool = False
    pixel_budget: int | None = None  # None: PIXEL_BUDGET


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
    granted: int  # pixels taken from the budget, given back once written or failed


class Runner:
    def __init__(self, model: DPT | None, preprocess: Preprocess, device: torch.device, dtype: torch.dtype, info: RunInfo, options: Options) -> None:
        """`model` may be None when there is nothing to infer (every input failed to expand)."""
        self.model, self.preprocess, self.device, self.dtype = model, preprocess, device, dtype
        self.info, self.options = info, options
        self.task = info.task

    def run(self, items: list[InputItem], plan: Plan, problems: list[InputProblem], report: Report = lambda r: None) -> Summary:
        start = time.perf_counter()
        summary = Summary()
        records = summary.records
        records += [_problem_record(p) for p in problems]
        base = len(records)
        records += [FileRecord(input=str(item.path), outputs=[os.path.abspath(p) for p in outs.values()]) for item, outs in zip(items, plan.outputs)]
        self._items, self._records, self._report = items, records[base:], report
        with interrupt_once() as interrupts:
            self._stop = interrupts.stop
            try:
                if interrupts.stop.is_set():
                    raise KeyboardInterrupt  # a signal before the run began (swallowed by an import)
                for r in records[:base]:
                    report(r)
                self._targets = [self._targets_of(outs, r) for outs, r in zip(plan.outputs, self._records)]
                self._process([i for i, targets in enumerate(self._targets) if targets])
            except (KeyboardInterrupt, Stopped):
                summary.interrupted = True
            finally:
                summary.interrupted |= interrupts.count > 0
                for r in records:
                    if r.status == PENDING:
                        r.status, r.error = INTERRUPTED, "run interrupted before this file was written"
                summary.seconds = time.perf_counter() - start
                self._write_manifest(plan, records, summary)
        return summary

    def _write_manifest(self, plan: Plan, records: list[FileRecord], summary: Summary) -> None:
        if not records:
            return
        for _ in range(2):  # a first interrupt may land during the write; later ones do not raise
            try:
                write_manifest(plan.manifest, self.info, records, summary.interrupted)
                return
            except KeyboardInterrupt:
                summary.interrupted = True
            except OSError as exc:
                raise DPTError(f"{shown(plan.manifest)}: cannot write the run manifest ({exc.strerror or exc})") from None

    def _targets_of(self, outs: dict[str, Path], record: FileRecord) -> dict[str, Path]:
        """The outputs to write for one input: none when it is skipped or refused."""
        refused = next(((p, why) for p in outs.values() if (why := name_problem(p))), None)
        if refused:
            record.status, record.error = FAILED, f"{shown(refused[0])}: {refused[1]}"
            self._report(record)
            return {}
        missing = {f: p for f, p in outs.items() if not os.path.exists(p)}
        if len(missing) == len(outs) or self.options.overwrite:
            return dict(outs)
        elif self.options.skip_existing:
            if missing:  # a run interrupted between two outputs of this input: finish it
                return missing
            record.status = SKIPPED
        else:
            existing = next(p for p in outs.values() if p not in missing.values())
            record.status = FAILED
            record.error = f"{shown(existing)}: output exists (use --overwrite to replace it, or --skip-existing)"
        self._report(record)
        return {}

    # --- the engine --------------------------------------------------------------------------

    def _process(self, todo: list[int]) -> None:
        opts = self.options
        window = max(2, opts.workers) * 2 + opts.batch_size
        self._budget = PixelBudget(opts.pixel_budget or PIXEL_BUDGET, self._stop)
        needs_photo = any(f in ("side-by-side", "overlay") for outs in self._targets for f in outs)
        readers = ThreadPoolExecutor(opts.workers, thread_name_prefix="dpt-read")
        writers_pool = ThreadPoolExecutor(2, thread_name_prefix="dpt-write")
        reading: deque[tuple[int, Future]] = deque()
        writing: deque[tuple[int, Future]] = deque()  # (input index, its write)
        buckets: dict[tuple[int, int], list[_Prepared]] = {}
        queue = iter(todo)
        try:
            while True:
                for i in queue:
                    reading.append((i, readers.submit(self._prepare, i, self._budget.ticket(), needs_photo)))
                    if len(reading) >= window:
                        break
                if not reading:
                    break
                i, future = reading.popleft()
                self._await(future, buckets, writers_pool, writing)
                try:
                    prepared = future.result()
                except DPTError as exc:
                    self._fail(i, exc)
                    continue
                except Stopped:
                    raise
                except Exception as exc:  # a reader's surprise fails that photo, not the run
                    self._fail(i, DPTError(f"{shown(self._items[i].path)}: cannot read ({type(exc).__name__}: {shown(exc)})"))
                    continue
                key = tuple(prepared.tensor.shape[-2:])
                buckets.setdefault(key, []).append(prepared)
                if len(buckets[key]) >= opts.batch_size:
                    self._infer(buckets.pop(key), writers_pool, writing)
                elif sum(map(len, buckets.values())) >= 2 * opts.batch_size:
                    largest = max(buckets, key=lambda k: len(buckets[k]))
                    self._infer(buckets.pop(largest), writers_pool, writing)
                self._collect(writing, limit=window)
            self._flush(buckets, writers_pool, writing)
            self._collect(writing, limit=0)
        finally:
            self._stop.set()  # readers waiting for their turn or on a stream give up
            readers.shutdown(wait=True, cancel_futures=True)
            # writes in flight complete (atomically) and record themselves; queued ones are dropped
            writers_pool.shutdown(wait=True, cancel_futures=True)
            for i, f in writing:
                if f.done() and not f.cancelled():
                    self._report(self._records[i])

    def _await(self, future: Future, buckets: dict, pool: ThreadPoolExecutor, writing: deque) -> None:
        """Wait for the next photo; if it waits for pixels held by a partial batch, run that batch."""
        while not future.done():
            if self._budget.starved and buckets:
                self._flush(buckets, pool, writing)
            wait([future, *(f for _, f in list(writing)[:1])], timeout=0.1, return_when=FIRST_COMPLETED)
            self._collect(writing, limit=len(writing))

    def _flush(self, buckets: dict, pool: ThreadPoolExecutor, writing: deque) -> None:
        for key in list(buckets):
            self._infer(buckets.pop(key), pool, writing)

    def _prepare(self, i: int, ticket: int, needs_photo: bool) -> _Prepared:
        item = self._items[i]
        granted: list[int] = []

        def admit(width: int, height: int) -> None:
            granted.append(self._budget.acquire(ticket, width * height))

        try:
            decoded = decode_image(item.path, item.stream, self._stop, admit)
            if decoded.frames > 1:
                self._records[i].frames = decoded.frames
            try:
                tensor = self.preprocess(decoded.rgb, name=shown(item.path))
                photo = to_uint8(decoded.rgb) if needs_photo else None
            except (RuntimeError, MemoryError) as exc:  # out of memory for a very large photo
                raise DPTError(f"{shown(item.path)}: cannot preprocess ({shown(first_line(exc))})") from None
            return _Prepared(i, tensor, decoded.rgb.shape[:2], photo, granted[0])
        except BaseException:
            if granted:
                self._budget.release(granted[0])
            else:
                self._budget.skip(ticket)
            raise

    def _infer(self, batch: list[_Prepared], pool: ThreadPoolExecutor, writing: deque) -> None:
        try:
            x = torch.stack([p.tensor for p in batch]).to(device=self.device, dtype=self.dtype)
            with torch.inference_mode():
                y = self.model(x)
                finite = torch.isfinite(y.reshape(len(batch), -1)).all(1).tolist()
                results = [self._to_size(y[j], p.size) if finite[j] else None for j, p in enumerate(batch)]
        except (RuntimeError, ValueError, MemoryError) as exc:  # out of memory, unsupported dtype on device, ...
            message = shown(first_line(exc))
            for p in batch:
                self._give_back(p)
                self._fail(p.index, DPTError(f"{shown(self._items[p.index].path)}: inference failed ({message})"))
            return
        for j, (p, result) in enumerate(zip(batch, results)):
            if result is None:
                self._give_back(p)
                self._fail(p.index, DPTError(f"{shown(self._items[p.index].path)}: {_non_finite(y[j], self.dtype)}"))
                continue
            record = self._records[p.index]
            record.input_size, record.network_size = list(p.size), list(batch[0].tensor.shape[-2:])
            writing.append((p.index, pool.submit(self._write, p, result)))

    def _to_size(self, y: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        return labels_to_size(y, size) if self.task == SEGMENTATION else depth_to_size(y, size)

    def _give_back(self, p: _Prepared) -> None:
        self._budget.release(p.granted)
        p.granted = 0

    def _collect(self, writing: deque, limit: int) -> None:
        """Report finished writes; block on the oldest while more than `limit` are pending."""
        while writing and (len(writing) > limit or writing[0][1].done()):
            i, future = writing.popleft()
            future.result()  # _write records its own outcome; this only waits
            self._report(self._records[i])

    def _fail(self, i: int, exc: Exception) -> None:
        record = self._records[i]
        record.status, record.error = FAILED, shown(exc)
        self._report(record)

    # --- encoding (worker threads) -----------------------------------------------------------

    def _write(self, p: _Prepared, result: np.ndarray) -> None:
        """Write one input's outputs and record the outcome (ok only once every file is in place)."""
        i, record, outs, opts = p.index, self._records[p.index], self._targets[p.index], self.options
        try:
            if self.task == SEGMENTATION:
                write_segmentation(result, p.photo, outs, record, self.model.config, opts.alpha)
            else:
                write_depth(result, p.photo, outs, record, opts.value_range, opts.colormap, self.model.config.is_metric)
            record.status = OK
        except DPTError as exc:
            record.status, record.error = FAILED, shown(exc)
        except OSError as exc:
            where = exc.filename or self._items[i].path
            record.status, record.error = FAILED, f"{shown(where)}: cannot write ({exc.strerror or exc})"
        except Exception as exc:  # an encoder's surprise fails this file, not the run
            record.status, record.error = FAILED, f"{shown(self._items[i].path)}: cannot write outputs ({type(exc).__name__}: {shown(exc)})"
        finally:
            self._give_back(p)


def _problem_record(p: InputProblem) -> FileRecord:
    message = f"{shown(p.path)}: {p.error}"
    if p.skipped:
        return FileRecord(input=p.path, status=SKIPPED, note=message)
    return FileRecord(input=p.path, status=FAILED, error=message)


def _non_finite(y: torch.Tensor, dtype: torch.dtype) -> str:
    nan, inf = int(torch.isnan(y).sum()), int(torch.isinf(y).sum())
    hint = " (float16 overflows: try --dtype bfloat16 or float32)" if dtype == torch.float16 else ""
    return f"the model's output has {nan:,} NaN and {inf:,} infinite value(s) of {y.numel():,}: nothing written{hint}"
