"""The batch runner: decode in worker threads, infer in same-size batches, write in worker threads.

Where each step runs (readers, main thread, writers) is the engine's placement (see `engine`):
every thread but the main one runs torch single-threaded, so N readers and N writers use N
cores without each op starting its own pool of threads; the main thread's forward pass on the
CPU keeps torch's full thread count.

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
from functools import partial
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
from .engine import Engine, Job, Result, Settings, use_device
from .images import decode_image, to_uint8
from .inputs import InputItem, InputProblem
from .manifest import FAILED, INTERRUPTED, OK, PENDING, SKIPPED, FileRecord, RunInfo, write_manifest
from .outputs import Plan, name_problem
from .preprocess import Preprocess
from .profile import Profile

PIXEL_BUDGET = 64_000_000  # photos in flight, in pixels: ~20 bytes each at the peak of their stages
# With the device placement a photo holds ~10-20 bytes a pixel on the host (uint8 pixels, their
# pinned copy, the int32 16-bit map and any float32 map coming back), and a GPU needs batches of
# 32-64 photos in flight plus those being written: four times the pixels, up to ~5 GB.
DEVICE_PIXEL_BUDGET = 4 * PIXEL_BUDGET


@dataclass(frozen=True)
class Options:
    colormap: str = "turbo"
    value_range: tuple[float, float] | None = None
    alpha: float = 0.5
    batch_size: int = 1
    workers: int = 4  # reader threads, and as many writer threads
    skip_existing: bool = False
    overwrite: bool = False
    pixel_budget: int | None = None  # None: PIXEL_BUDGET
    png_level: int | None = None  # None: png.DEFAULT_LEVEL
    compile: bool = False
    profile: bool = False
    on_device: bool | None = None  # None: preprocess and postprocess on the device unless it is the CPU


@dataclass
class Summary:
    records: list[FileRecord] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    profile: dict | None = None  # with --profile: see pipeline.profile

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def images_per_second(self) -> float:
        return self.count(OK) / self.seconds if self.seconds > 0 else 0.0


Report = Callable[[FileRecord], None]


@dataclass
class _Prepared:
    index: int
    job: Job
    photo: Optional[np.ndarray]  # uint8 RGB, for pictures that show it
    granted: int  # pixels taken from the budget, given back once written or failed


class Runner:
    def __init__(
        self, model: DPT | None, preprocess: Preprocess, device: torch.device, dtype: torch.dtype, info: RunInfo, options: Options,
        notice: Callable[[str], None] = lambda text: None,
    ) -> None:
        """`model` may be None when there is nothing to infer (every input failed to expand);
        `notice` shows a line about the run itself (compiling, a smaller batch after out-of-memory)."""
        self.model, self.preprocess, self.device, self.dtype = model, preprocess, device, dtype
        self.info, self.options, self._notice = info, options, notice
        self._profile = Profile(options.profile)
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
                if self._profile.enabled:
                    summary.profile = self._profile.report(summary.count(OK), summary.seconds)
                self._write_manifest(plan, records, summary)
        return summary

    def _write_manifest(self, plan: Plan, records: list[FileRecord], summary: Summary) -> None:
        if not records:
            return
        for _ in range(2):  # a first interrupt may land during the write; later ones do not raise
            try:
                write_manifest(plan.manifest, self.info, records, summary.interrupted, summary.profile)
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
        if not todo:  # every input failed, was skipped or refused: no model was loaded
            return
        opts = self.options
        self._engine = self._make_engine()
        window = max(2, opts.workers) * 2 + opts.batch_size
        default = DEVICE_PIXEL_BUDGET if self._engine.settings.on_device else PIXEL_BUDGET
        self._budget = PixelBudget(opts.pixel_budget or default, self._stop)
        needs_photo = any(f in ("side-by-side", "overlay") for outs in self._targets for f in outs)
        setup = partial(_worker_thread, self.device)
        readers = ThreadPoolExecutor(opts.workers, thread_name_prefix="dpt-read", initializer=setup)
        writers_pool = ThreadPoolExecutor(max(2, opts.workers), thread_name_prefix="dpt-write", initializer=setup)
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
                key = prepared.job.net
                buckets.setdefault(key, []).append(prepared)
                batch = self._engine.batch_size
                if len(buckets[key]) >= batch:
                    self._infer(buckets.pop(key), writers_pool, writing)
                elif sum(map(len, buckets.values())) >= 2 * batch:
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

    def _make_engine(self) -> Engine:
        opts = self.options
        formats = frozenset(f for outs in self._targets for f in outs)
        # the device placement by default on CUDA only: MPS has no float64 (exact quantising)
        on_device = self.device.type == "cuda" if opts.on_device is None else opts.on_device
        settings = Settings(self.task, formats, opts.value_range, on_device, opts.compile, opts.batch_size)
        return Engine(self.model, self.preprocess, self.device, self.dtype, settings, self._profile, self._notice)

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
            with self._profile.stage("read"):
                decoded = decode_image(item.path, item.stream, self._stop, admit)
            if decoded.frames > 1:
                self._records[i].frames = decoded.frames
            try:
                photo = to_uint8(decoded.pixels) if needs_photo else None
                job = self._engine.prepare(decoded.pixels, shown(item.path))
            except (RuntimeError, MemoryError) as exc:  # out of memory for a very large photo
                raise DPTError(f"{shown(item.path)}: cannot preprocess ({shown(first_line(exc))})") from None
            return _Prepared(i, job, photo, granted[0])
        except BaseException:
            if granted:
                self._budget.release(granted[0])
            else:
                self._budget.skip(ticket)
            raise

    def _infer(self, batch: list[_Prepared], pool: ThreadPoolExecutor, writing: deque) -> None:
        try:
            fetches = self._engine.infer([p.job for p in batch])
        except Exception as exc:  # out of memory at batch 1, unsupported dtype on the device, ...
            message = shown(first_line(exc))
            for p in batch:
                self._give_back(p)
                self._fail(p.index, DPTError(f"{shown(self._items[p.index].path)}: inference failed ({message})"))
            return
        for p, fetch in zip(batch, fetches):
            record = self._records[p.index]
            record.input_size, record.network_size = list(p.job.size), list(p.job.net)
            writing.append((p.index, pool.submit(self._write, p, fetch)))

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

    def _write(self, p: _Prepared, fetch: Callable[[], Result]) -> None:
        """Write one input's outputs and record the outcome (ok only once every file is in place)."""
        i, record, outs, opts = p.index, self._records[p.index], self._targets[p.index], self.options
        try:
            try:
                result = fetch()
            except (DPTError, KeyboardInterrupt):
                raise
            except Exception as exc:  # resizing back out of memory, a device error at the copy, ...
                raise DPTError(f"{shown(self._items[i].path)}: inference failed ({shown(first_line(exc))})") from None
            with self._profile.stage("encode"):
                if self.task == SEGMENTATION:
                    write_segmentation(result, p.photo, outs, record, self.model.config, opts.alpha)
                else:
                    write_depth(result, p.photo, outs, record, opts.colormap, self.model.config.is_metric, opts.png_level)
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


def _worker_thread(device: torch.device) -> None:
    """Reader and writer threads run torch ops on one thread each (the main thread keeps its
    count; threads started later inherit 1), and use the run's GPU, not GPU 0, for pinned
    memory and events."""
    torch.set_num_threads(1)
    use_device(device)
