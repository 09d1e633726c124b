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
from dataclasses import dataclass
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
from .autorange import DEFERRED, KeptMaps
from .distributed import Cluster
from .encoding import DepthMap, write_depth, write_segmentation
from .engine import Engine, Job, Result, Settings, use_device
from .images import decode_image, to_uint8
from .inputs import InputItem, InputProblem
from .manifest import FAILED, INTERRUPTED, OK, PENDING, FileRecord, RunInfo, write_manifest
from .outputs import Plan
from .preprocess import Preprocess
from .profile import Profile
from .records import Summary, outcome, problem_record, targets

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
    camera: dict | None = None  # -f ply: {"fov": degrees} or {"fx", "fy", "cx"?, "cy"?} in pixels
    auto_range: bool = False  # --range auto: one range for the whole run (see autorange)


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
        notice: Callable[[str], None] = lambda text: None, cluster: Cluster | None = None,
    ) -> None:
        """`model` may be None when there is nothing to infer (every input failed to expand);
        `notice` shows a line about the run itself (compiling, a smaller batch after out-of-memory)."""
        self.model, self.preprocess, self.device, self.dtype = model, preprocess, device, dtype
        self.info, self.options, self._notice, self._cluster = info, options, notice, cluster
        self._profile = Profile(options.profile)
        self.task = info.task

    def run(self, items: list[InputItem], plan: Plan, problems: list[InputProblem], report: Report = lambda r: None) -> Summary:
        start = time.perf_counter()
        summary = Summary()
        records = summary.records
        records += [problem_record(p) for p in problems]
        base = len(records)
        records += [FileRecord(input=str(item.path), outputs=[os.path.abspath(p) for p in outs.values()]) for item, outs in zip(items, plan.outputs)]
        self._items, self._records, self._report = items, records[base:], report
        self._targets: list[dict[str, Path]] = []
        self._todo: list[int] = []  # the inputs with outputs to write
        self._kept: KeptMaps | None = None  # --range auto: the raw maps waiting for the run's range
        with interrupt_once() as interrupts:
            self._stop = interrupts.stop
            try:
                if interrupts.stop.is_set():
                    raise KeyboardInterrupt  # a signal before the run began (swallowed by an import)
                if self._leads:
                    for r in records[:base]:
                        report(r)
                self._targets = [self._targets_of(outs, r) for outs, r in zip(plan.outputs, self._records)]
                deferring = self.options.auto_range and any(set(t) & DEFERRED for t in self._targets)
                self._kept = KeptMaps(plan.manifest.parent) if deferring else None
                self._todo = [i for i, targets in enumerate(self._targets) if targets]
                if self._cluster is not None:  # no rank writes before every rank has planned
                    self._cluster.meet("planned")
                self._process(self._todo)
            except (KeyboardInterrupt, Stopped):
                summary.interrupted = True
            finally:
                if self._kept is not None:
                    self._kept.close()
                summary.interrupted |= interrupts.count > 0
                if self._cluster is not None:
                    if summary.interrupted:  # no input left unrecorded
                        self._cluster.take_the_rest(self._todo, self._records)
                    records[:] = self._cluster.mine(records, {base + i for i in self._todo})
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

    # --- the engine --------------------------------------------------------------------------

    def _process(self, todo: list[int]) -> None:
        if not todo:  # every input failed, was skipped or refused: no model was loaded
            return
        opts = self.options
        self._engine = self._make_engine()
        window = max(2, opts.workers) * 2 + opts.batch_size
        default = DEVICE_PIXEL_BUDGET if self._engine.settings.on_device else PIXEL_BUDGET
        self._budget = PixelBudget(opts.pixel_budget or default, self._stop)
        needs_photo = any(f in ("side-by-side", "overlay", "ply") for outs in self._targets for f in outs)
        setup = partial(_worker_thread, self.device)
        readers = ThreadPoolExecutor(opts.workers, thread_name_prefix="dpt-read", initializer=setup)
        writers_pool = ThreadPoolExecutor(max(2, opts.workers), thread_name_prefix="dpt-write", initializer=setup)
        reading: deque[tuple[int, Future]] = deque()
        writing: deque[tuple[int, Future]] = deque()  # (input index, its write)
        buckets: dict[tuple[int, int], list[_Prepared]] = {}
        queue = iter(todo) if self._cluster is None else self._cluster.claimed(todo, self._records)
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
            self._write_kept(writers_pool, writing)
        finally:
            self._stop.set()  # readers waiting for their turn or on a stream give up
            readers.shutdown(wait=True, cancel_futures=True)
            # writes in flight complete (atomically) and record themselves; queued ones are dropped
            writers_pool.shutdown(wait=True, cancel_futures=True)
            for i, f in writing:
                if f.done() and not f.cancelled() and self._records[i].status != PENDING:
                    self._report(self._records[i])

    def _make_engine(self) -> Engine:
        opts = self.options
        formats = frozenset(f for outs in self._targets for f in outs)
        if self._kept is not None:  # normalised later, from the raw maps
            formats = (formats - DEFERRED) | {"npy"}
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
                decoded = decode_image(item.path, item.stream, self._stop, admit, item.data)
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
            if self._records[i].status != PENDING:  # else kept for --range auto: reported once written
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
            with self._outcome(i):
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
                        now, later = KeptMaps.split(outs) if self._kept is not None else (outs, {})
                        self._write_depth(result, p.photo, now, record)
                        if later:
                            self._kept.keep(i, result.depth, p.photo if "side-by-side" in later else None)
                            record.min = record.max = None  # the run's range, once known
                            return  # pending until then
                record.status = OK
        finally:
            self._give_back(p)

    def _write_kept(self, pool: ThreadPoolExecutor, writing: deque) -> None:
        """--range auto, once every photo has been through the model: the PNGs and pictures."""
        kept = self._kept
        todo = [i for i, r in enumerate(self._records) if r.status == PENDING and kept is not None and kept.has(i)]
        if not todo:
            return
        lo, hi = kept.run_range()
        self._notice(f"--range auto: writing PNGs and pictures over the run's range {lo:.6g}..{hi:.6g}")

        def finish(i: int) -> None:
            record = self._records[i]
            with self._outcome(i), self._profile.stage("encode"):
                depth, photo = kept.load(i)
                self._write_depth(DepthMap(depth, lo, hi), photo, KeptMaps.split(self._targets[i])[1], record)
                record.status = OK
            kept.discard(i)

        for i in todo:
            writing.append((i, pool.submit(finish, i)))
        self._collect(writing, limit=0)

    def _targets_of(self, outs: dict[str, Path], record: FileRecord) -> dict[str, Path]:
        chosen = targets(outs, record, self.options.overwrite, self.options.skip_existing)
        if record.status != PENDING and self._leads:
            self._report(record)
        return chosen

    @property
    def _leads(self) -> bool:
        """This process reports and records what no rank claims (inputs that failed to expand,
        outputs that exist): the only process, or rank 0."""
        return self._cluster is None or self._cluster.rank == 0

    def _outcome(self, i: int):
        return outcome(self._records[i], self._items[i].path)

    def _write_depth(self, result: DepthMap, photo: Optional[np.ndarray], outs: dict[str, Path], record: FileRecord) -> None:
        opts = self.options
        write_depth(result, photo, outs, record, opts.colormap, self.model.config.is_metric, opts.png_level, opts.camera)

def _worker_thread(device: torch.device) -> None:
    """Reader and writer threads run torch ops on one thread each (the main thread keeps its
    count; threads started later inherit 1), and use the run's GPU, not GPU 0, for pinned
    memory and events."""
    torch.set_num_threads(1)
    use_device(device)
