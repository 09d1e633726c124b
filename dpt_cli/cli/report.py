"""Progress and summary on stderr: a rich bar on a terminal, one plain line per file otherwise."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..pipeline.manifest import FAILED, OK, SKIPPED, FileRecord
from ..text import shown


class Reporter:
    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
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
        self.done += 1
        if record.status == FAILED:
            self._line(f"dpt: {shown(record.error)}")
        elif record.note and not self.quiet:
            self._line(f"dpt: {shown(record.note)}")
        elif not self.quiet and not self.live:
            what = "skipped (outputs exist)" if record.status == SKIPPED else "-> " + ", ".join(map(shown, record.outputs))
            self._line(f"[{self.done}/{self.total}] {shown(record.input)} {what}")
        if self.progress is not None:
            rate = self.done / max(1e-9, time.perf_counter() - self.start)
            self.progress.update(self.task, advance=1, description=shown(record.input)[-40:], rate=f"{rate:.2f} img/s")

    def note(self, text: str) -> None:
        """A line about the run itself (compiling, a smaller batch), shown unless --quiet."""
        if not self.quiet:
            self._line(f"dpt: {text}")

    def profile(self, profile: dict) -> None:
        """--profile: thread-seconds per stage and per image (printed even with --quiet: asked for)."""
        n = max(1, profile["images"])
        parts = ", ".join(f"{k} {v * 1000 / n:.1f}" for k, v in profile["seconds"].items())
        self._line(f"profile (ms per image, summed over threads): {parts}; wall {profile['wall_seconds'] * 1000 / n:.1f}")

    def summary(self, summary) -> None:
        if self.quiet:
            return
        counts = (summary.count(OK), summary.count(SKIPPED), summary.count(FAILED))
        rate = f"{summary.images_per_second:.2f}"
        if sys.stderr.isatty():
            table = Table(title="dpt" + (" (interrupted)" if summary.interrupted else ""))
            for name in ("done", "skipped", "failed", "images/s"):
                table.add_column(name, justify="right")
            table.add_row(*map(str, counts), rate)
            self.console.print(table)
        else:
            extra = ", interrupted" if summary.interrupted else ""
            self._line(f"done {counts[0]}, skipped {counts[1]}, failed {counts[2]}, {rate} images/s{extra}")

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)
