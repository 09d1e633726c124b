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


@contextmanager
def _handling(handler, restore_ignored=lambda: False) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM inside the block, the previous handlers after (ignored
    instead where `restore_ignored()`). Only the main thread may set handlers: elsewhere, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # getsignal None: a handler set outside Python, which could not be put back
    previous = {s: signal.signal(s, handler) for s in SIGNALS if signal.getsignal(s) is not None}
    try:
        yield
    finally:
        ignore = restore_ignored()
        for s, old in previous.items():
            signal.signal(s, signal.SIG_IGN if ignore else old)


def _raise(signum, frame) -> None:
    RECEIVED.set()
    raise KeyboardInterrupt


@contextmanager
def installed() -> Iterator[None]:
    """Both signals raise KeyboardInterrupt inside the block; the caller's handlers come back after
    (once interrupted, we are on our way out: then a late Ctrl-C must not kill the exit itself)."""
    RECEIVED.clear()
    with _handling(_raise, restore_ignored=RECEIVED.is_set):
        yield


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
    with _handling(state.handle):
        if RECEIVED.is_set():
            state.count = 1
            state.stop.set()
        yield state


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver the first one caught."""
    caught: list[int] = []
    try:
        with _handling(lambda signum, frame: caught.append(signum)):
            yield
    finally:
        if caught:
            signal.raise_signal(caught[0])
