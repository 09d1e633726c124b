"""Ctrl-C and SIGTERM: one policy for the whole program (no torch imported here).

- `installed()` (around the whole CLI): both signals raise KeyboardInterrupt, so `kill` stops a run
  exactly as Ctrl-C does, and each is remembered in RECEIVED. Some libraries' imports catch and
  drop a KeyboardInterrupt; `raise_if_received()` at checkpoints makes sure it still stops us.
- `interrupt_once()` (a batch run): the first signal raises and sets `stop` for the worker
  threads; later ones only count, so a second Ctrl-C during the wind-down cannot abandon writes
  in flight or the manifest (which must match the disk).
- `deferred()` (a step that must not be cut in half, such as swapping two folders): signals wait
  until the block ends, then are delivered as they would have been.

Handlers can only be set from the main thread; elsewhere these do nothing.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RECEIVED = threading.Event()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum, frame) -> None:
    RECEIVED.set()
    raise KeyboardInterrupt


@contextmanager
def installed() -> Iterator[None]:
    """Both signals raise KeyboardInterrupt inside the block; the caller's handlers come back after."""
    RECEIVED.clear()
    if not _main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            # once interrupted, we are on our way out: a late Ctrl-C must not kill the exit itself
            signal.signal(s, signal.SIG_IGN if RECEIVED.is_set() else handler)


def raise_if_received() -> None:
    if RECEIVED.is_set():
        raise KeyboardInterrupt


class Interrupts:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.count = 0

    def handle(self, signum, frame) -> None:
        RECEIVED.set()
        self.count += 1
        if not self.stop.is_set():
            self.stop.set()
            raise KeyboardInterrupt
        if self.count == 2:
            print("dpt: finishing the files being written, then stopping", file=sys.stderr, flush=True)


@contextmanager
def interrupt_once() -> Iterator[Interrupts]:
    """Signals raise once for the duration of the block (see module docstring). A signal that
    arrived earlier and was swallowed counts as the first: the block starts stopped."""
    state = Interrupts()
    if not _main_thread():
        yield state
        return
    previous = {s: signal.signal(s, state.handle) for s in SIGNALS}
    try:
        if RECEIVED.is_set():
            state.count = 1
            state.stop.set()
        yield state
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver the first one caught."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for s in SIGNALS:
        if signal.getsignal(s) is not None:  # None: set outside Python, and could not be put back
            previous[s] = signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])
