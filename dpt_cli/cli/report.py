"""Progress and summary on stderr: a rich bar on a terminal, one plain line per file otherwise."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..pipeline.manifest import FAILED, INTERRUPTED, OK, SKIPPED, FileRecord
from ..text import shown

SUMMARY_COUNTS = (("done", OK), ("skipped", SKIPPED), ("failed", FAILED), ("interrupted", INTERRUPTED))
MAX_FAILURES_REPEATED = 5


class Reporter:
    def __init__(
        self, total: int, quiet: bool, to_stdout: bool = False, counter: Callable[[], int] | None = None, label: str = ""
    ) -> None:
        """`to_stdout`: the one output goes to stdout (-o -), not to the file it passes through;
        `counter`: counts one file done and returns how many the whole job has done (torchrun);
        `label`: put before this process's summary (`rank 0: `)."""
        self.total, self.quiet, self.to_stdout, self.counter, self.label = total, quiet, to_stdout, counter, label
        self.console = Console(stderr=True, highlight=False)
        self.live = sys.stderr.isatty() and not quiet
        self.start = time.perf_counter()
        self.done = 0
        self.progress: Progress | None = None

    def header(self, text: str) -> None:
        if not self.quiet:
            self._line(text)

    def __enter__(self) -> "Reporter":
        if self.live:
            self.progress = Progress(
                TextColumn("{task.description}", style="dim"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self.console, transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("starting", total=self.total, rate="")
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def file_done(self, record: FileRecord) -> None:
        self.done = self.counter() if self.counter else self.done + 1
        if record.status == FAILED:
            self._line(f"dpt: {shown(record.error)}")
        elif record.note and not self.quiet:
            self._line(f"dpt: {shown(record.note)}")
        elif not self.quiet and not self.live:
            where = "stdout" if self.to_stdout else ", ".join(map(shown, record.outputs))
            what = "skipped (outputs exist)" if record.status == SKIPPED else f"-> {where}"
            frame = f" frame {record.frame}" if record.frame is not None else ""
            self._line(f"[{self.done}/{self.total}] {shown(record.input)}{frame} {what}")
        if self.progress is not None:
            rate = self.done / max(1e-9, time.perf_counter() - self.start)
            self.progress.update(self.task, completed=self.done, description=shown(record.input)[-40:], rate=f"{rate:.2f} img/s")

    def note(self, text: str) -> None:
        """A line about the run itself (compiling, a smaller batch), shown unless --quiet."""
        if not self.quiet:
            self._line(f"dpt: {text}")

    def profile(self, profile: dict) -> None:
        """--profile: thread-seconds per stage and per image (printed even with --quiet: asked for)."""
        n = max(1, profile["images"])
        parts = ", ".join(f"{k} {v * 1000 / n:.1f}" for k, v in profile["seconds"].items())
        self._line(f"profile (ms per image, summed over threads): {parts}; wall {profile['wall_seconds'] * 1000 / n:.1f}")

    def summary(self, summary, manifest: Path | None, resume_hint: str | None = None) -> None:
        """Counts, time and speed, where the results are, the failures again (a few), and how to
        resume after an interruption."""
        if self.quiet:
            return
        counts = {name: summary.count(status) for name, status in SUMMARY_COUNTS}
        ran = counts["done"] > 0
        speed = f"{summary.images_per_second:.2f}" if ran else "-"
        if sys.stderr.isatty():
            table = Table(title="dpt" + (" (interrupted)" if summary.interrupted else ""))
            for name in (*counts, "seconds", "images/s"):
                table.add_column(name, justify="right")
            table.add_row(*map(str, counts.values()), f"{self.elapsed:.1f}", speed)
            self.console.print(table)
        else:
            parts = ", ".join(f"{k} {v}" for k, v in counts.items())
            rate = f" ({speed} images/s)" if ran else ""
            self._line(f"{self.label}{parts} in {self.elapsed:.1f} s{rate}")
        if manifest is not None and summary.records:
            folder = "the current folder" if manifest.parent == Path(".") else f"{shown(manifest.parent)}{os.sep}"
            self._line(f"outputs in {folder}, records in {shown(manifest)}")
        failed = [r for r in summary.records if r.status == FAILED]
        for r in failed[:MAX_FAILURES_REPEATED]:
            self._line(f"failed: {shown(r.error)}")
        if len(failed) > MAX_FAILURES_REPEATED:
            self._line(f"... and {len(failed) - MAX_FAILURES_REPEATED} more failed (see the records)")
        if summary.interrupted and resume_hint:
            self._line(f"interrupted: {resume_hint}")

    @property
    def elapsed(self) -> float:
        """Seconds since the reporter was made: the model's loading included."""
        return time.perf_counter() - self.start

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)
