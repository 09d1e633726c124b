"""A bound on the pixels of photos in flight, so memory stays bounded whatever their sizes.

Counting images is not enough: nine 81-Mpx photos decoded ahead are 9 GB of float RGB. Each
photo takes its pixel count from the budget once its header is read (before its pixels are
decoded) and gives it back when its outputs are written or it fails. A photo larger than the
whole budget waits until nothing else is in flight and then runs alone.

Grants are made in submission order (tickets). That keeps a large photo from starving, and it
rules out deadlock: a photo that waits can only be waiting for photos submitted before it, which
the runner has already taken off the read queue: they are in a partial batch (the runner flushes
those when `starved`) or being written (writers always finish).
"""

from __future__ import annotations

import threading


class Stopped(Exception):
    """The run was interrupted while a reader waited for its turn."""


class PixelBudget:
    def __init__(self, limit: int, stop: threading.Event | None = None) -> None:
        if limit < 1:
            raise ValueError("the pixel budget must be positive")
        self.limit = limit
        self.used = 0
        self.issued = 0  # tickets handed out
        self.serving = 0  # the ticket whose turn it is
        self.starved = False  # the ticket whose turn it is waits for pixels held by others
        self._stop = stop or threading.Event()
        self._cond = threading.Condition()

    def ticket(self) -> int:
        """A place in line; every ticket must be passed to `acquire` or `skip` exactly once."""
        with self._cond:
            self.issued += 1
            return self.issued - 1

    def acquire(self, ticket: int, pixels: int) -> int:
        """Wait for `ticket`'s turn and room for `pixels`; return the amount granted (to release)."""
        want = min(max(0, pixels), self.limit)
        with self._cond:
            while not (self.serving == ticket and (self.used + want <= self.limit or self.used == 0)):
                if self._stop.is_set():
                    raise Stopped
                if self.serving == ticket:
                    self.starved = True  # only the head of the line can be starved
                self._cond.wait(0.1)
            self.used += want
            self.serving += 1
            self.starved = False
            self._cond.notify_all()
        return want

    def skip(self, ticket: int) -> None:
        """Give up `ticket` without taking pixels (its photo failed before its size was known)."""
        self.acquire(ticket, 0)

    def release(self, granted: int) -> None:
        if granted:
            with self._cond:
                self.used -= granted
                self._cond.notify_all()
