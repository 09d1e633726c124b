"""Per-stage time of a run (`--profile`): where a folder's seconds go.

Stages run in many threads at once, so each total is thread-seconds (the sum over photos), not
wall time: on N busy threads a stage can total up to N times the run's wall time. `seconds` is
elapsed time in the stage (waits for a core or the GIL included), `cpu_seconds` the CPU time of
the thread running it (torch's own worker threads not included: the forward pass on a multi-core
CPU counts its main thread only). With a GPU,
`forward` and `postprocess` are measured with a device sync around them, which costs some
overlap: a profiled run shows where time goes, an unprofiled one is the fast one.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

STAGES = ("read", "preprocess", "forward", "postprocess", "encode")


class Profile:
    """Thread-safe seconds per stage; a disabled profile measures nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.cpu_seconds = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            elapsed, used = time.perf_counter() - start, time.thread_time() - cpu
            with self._lock:
                self.seconds[name] += elapsed
                self.cpu_seconds[name] += used

    def report(self, images: int, wall: float) -> dict:
        """The manifest's "profile" object: wall seconds, images done, thread-seconds per stage."""
        return {
            "wall_seconds": round(wall, 6),
            "images": images,
            "seconds": {k: round(v, 6) for k, v in self.seconds.items()},
            "cpu_seconds": {k: round(v, 6) for k, v in self.cpu_seconds.items()},
        }
