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
from . import clips as clip_io
from .autorange import fingerprint
from .deferral import PHOTO_FORMATS, Deferral, Policy
from .distributed import Cluster
from .encoding import DepthMap, video_frame, write_depth, write_segmentation
from .engine import Engine, Job, Result, Settings, use_device
from .images import Decoded, decode_image, to_uint8
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
    per_frame: bool = False  # --range per-frame: each frame of a clip its own range
    sequence: bool = False  # --sequence: the photos are the frames of one sequence
    smooth: int = 0  # --smooth N: a running range over N frames
    align: bool = False  # --align: each frame's scale and shift fitted to the previous frame
    weights: str = ""  # what identifies the model's files (kept maps of other weights are not reused)


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
        records += [FileRecord(input=str(item.path), outputs=[os.path.abspath(p) for p in outs.values()], frame=item.frame)
                    for item, outs in zip(items, plan.outputs)]
        self._items, self._records, self._report = items, records[base:], report
        self._targets: list[dict[str, Path]] = []
        self._todo: list[int] = []  # the inputs with outputs to write
        self._deferral: Deferral | None = None  # the inputs waiting for their group's range
        self._clips = clip_io.Clips(items)
        with interrupt_once() as interrupts:
            self._stop = interrupts.stop
            try:
                if interrupts.stop.is_set():
                    raise KeyboardInterrupt  # a signal before the run began (swallowed by an import)
                if self._leads:
                    for r in records[:base]:
                        report(r)
                self._targets = [self._targets_of(outs, r) for outs, r in zip(plan.outputs, self._records)]
                if self.task != SEGMENTATION:
                    self._deferral = Deferral(items, plan.outputs, self._targets, Policy.of(self.options), plan.manifest.parent,
                                              *self._fingerprints(plan), fresh=self.options.overwrite)
                self._todo = [i for i, targets in enumerate(self._targets) if targets]
                if self._cluster is not None:  # no rank writes before every rank has planned
                    self._cluster.meet("planned")
                self._process(self._todo)
            except (KeyboardInterrupt, Stopped):
                summary.interrupted = True
            finally:
                interrupts.stop.set()  # a signal from here on is noted, not raised: the videos and manifest complete
                summary.interrupted |= interrupts.count > 0
                self._clips.close(self._records, complete=not summary.interrupted)
                if self._deferral is not None:
                    self._deferral.close(self._records, summary.interrupted)
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
                if self._clips:
                    kept = self._deferral.ranges() if self._deferral is not None else {}
                    self.info.videos = self._clips.entries(self._records, kept, self.options.value_range is not None)
                    records[:] = clip_io.collapse(records, items, base)
                self._write_manifest(plan, records, summary)
        return summary

    def _fingerprints(self, plan: Plan) -> tuple[str, str]:
        """Where the kept maps go, and what decides their values (see autorange)."""
        info, settings, opts = self.info, self.info.settings, self.options
        single = [os.path.abspath(p) for p in plan.outputs[0].values()] if plan.single and plan.outputs else []
        return fingerprint(os.path.abspath(plan.manifest), single), fingerprint(
            info.task, info.model, opts.weights, info.dtype, self.device.type, settings.get("network_size"),
            settings.get("keep_aspect"), opts.batch_size, opts.on_device)

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
        needs_photo = any(f in PHOTO_FORMATS | {"overlay"} for outs in self._targets for f in outs)
        resumed = self._deferral.resumed if self._deferral is not None else set()
        if resumed:
            self._notice(f"{len(resumed)} input(s) reuse the depth maps an interrupted run kept (no model pass for them)")
        todo = [i for i in todo if i not in resumed]
        self._clips.open(todo, self._targets)
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
                    self._fail(i, DPTError(f"{self._name(i)}: cannot read ({type(exc).__name__}: {shown(exc)})"))
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
        if self._deferral is not None and self._deferral.kept is not None:  # kept raw, normalised later
            formats |= {"npy"}
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
                if item.clip is not None:
                    admit(item.clip.info.width, item.clip.info.height)
                    decoded = Decoded(item.clip.frame(item.frame, self._stop))
                else:
                    decoded = decode_image(item.path, item.stream, self._stop, admit, item.data)
            if decoded.frames > 1:
                self._records[i].frames = decoded.frames
            try:
                photo = to_uint8(decoded.pixels) if needs_photo else None
                job = self._engine.prepare(decoded.pixels, self._name(i))
            except (RuntimeError, MemoryError) as exc:  # out of memory for a very large photo
                raise DPTError(f"{self._name(i)}: cannot preprocess ({shown(first_line(exc))})") from None
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
                self._fail(p.index, DPTError(f"{self._name(p.index)}: inference failed ({message})"))
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
        self._clips.skip(i)
        self._report(record)

    def _name(self, i: int) -> str:
        """An input as messages name it: its path, and the frame of a clip."""
        item = self._items[i]
        return item.clip.name(item.frame) if item.clip is not None else shown(item.path)

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
                    raise DPTError(f"{self._name(i)}: inference failed ({shown(first_line(exc))})") from None
                with self._profile.stage("encode"):
                    if self.task == SEGMENTATION:
                        write_segmentation(result, p.photo, outs, record, self.model.config, opts.alpha)
                    else:
                        now, later = self._deferral.split(i, outs)
                        self._write_depth(i, result, p.photo, now)
                        if later:
                            self._deferral.keep(i, result.depth, p.photo)
                            record.min = record.max = None  # the group's range, once known
                            return  # pending until then
                record.status = OK
        finally:
            if record.status == FAILED:
                self._clips.skip(i)
            self._give_back(p)

    def _write_kept(self, pool: ThreadPoolExecutor, writing: deque) -> None:
        """Once every input has been through the model: the outputs that waited for their
        group's range (see deferral), in order (an output video takes its frames in order)."""
        if self._deferral is None:
            return

        def finish(i: int, norm, outs: dict[str, Path]) -> None:
            record = self._records[i]
            with self._outcome(i), self._profile.stage("encode"):
                depth, photo = self._deferral.load(i, norm)
                self._write_depth(i, DepthMap(depth, norm.lo, norm.hi), photo, outs)
                record.status = OK
            if record.status == FAILED:
                self._clips.skip(i)

        for i, norm, outs in self._deferral.finish(self._records, self._notice):
            writing.append((i, pool.submit(finish, i, norm, outs)))
            self._collect(writing, limit=2 * self.options.workers)
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

    def _write_depth(self, i: int, result: DepthMap, photo: Optional[np.ndarray], outs: dict[str, Path]) -> None:
        opts, metric = self.options, self.model.config.is_metric
        files = {f: p for f, p in outs.items() if f not in clip_io.VIDEO_FORMATS}
        write_depth(result, photo, files, self._records[i], opts.colormap, metric, opts.png_level, opts.camera)
        for fmt in set(outs) - set(files):  # this frame of -o NAME.mp4 / NAME.mkv
            self._clips.put(i, video_frame(result, photo, fmt, opts.colormap, metric))

def _worker_thread(device: torch.device) -> None:
    """Reader and writer threads run torch ops on one thread each (the main thread keeps its
    count; threads started later inherit 1), and use the run's GPU, not GPU 0, for pinned
    memory and events."""
    torch.set_num_threads(1)
    use_device(device)
