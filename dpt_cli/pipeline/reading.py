"""Opening inputs without ever hanging: regular files, or a named stream read interruptibly.

A FIFO named `f.jpg` with no writer blocks an ordinary `open()` forever, and a thread blocked in
`read()` cannot be stopped, so it would also keep the process from exiting. Every input is
therefore opened with O_NONBLOCK (which never waits) and checked with fstat on the descriptor
itself (no race with a file swapped after a stat): regular files are read normally; the streams
a user names on purpose (/dev/stdin, /dev/fd/N) are read in short waits that check a stop event;
anything else (FIFOs, sockets, devices, terminals) is refused with its kind named.
"""

from __future__ import annotations

import io
import os
import re
import select
import stat
import threading
from typing import BinaryIO

from ..errors import DPTError
from ..text import os_reason, shown

STREAM_LIMIT = 1 << 30  # bytes read from a stream at most: an image bigger than this is refused
_STREAM_NAMES = re.compile(r"^/(dev/stdin|dev/fd/\d+|proc/self/fd/\d+)$")
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


class InputError(DPTError):
    """An input that cannot be read; the batch goes on without it."""


class NotRegular(InputError):
    """A path that exists but is not a regular file (and is not a stream named on purpose)."""


def is_stream_name(path: str) -> bool:
    """Whether `path` is one of the stream names a user may give explicitly (/dev/stdin, /dev/fd/N)."""
    return bool(_STREAM_NAMES.match(path))


def kind_of(mode: int) -> str:
    """'a FIFO', 'a socket', ... for a st_mode that is not a regular file or directory."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_error(path: object, exc: OSError) -> InputError:
    """One line for an OSError met while opening `path`."""
    return InputError(f"{shown(path)}: {os_reason(exc)}")


def open_input(path: os.PathLike | str, stream: bool = False, stop: threading.Event | None = None) -> BinaryIO:
    """Open `path` for reading; never blocks on FIFOs or devices.

    Regular files come back as ordinary file objects. With `stream` (the user named /dev/stdin or
    /dev/fd/N), a pipe is read whole into memory, waiting in short steps that give up once `stop`
    is set. Anything else raises NotRegular; open failures raise InputError.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise open_error(path, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.set_blocking(fd, True)
            f, fd = os.fdopen(fd, "rb"), -1
            return f
        if stat.S_ISDIR(mode):
            raise InputError(f"{shown(path)}: is a directory, not an image")
        if stream and not os.isatty(fd) and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            return io.BytesIO(read_stream(fd, path, stop))
        what = "a terminal" if os.isatty(fd) else kind_of(mode)
        raise NotRegular(f"{shown(path)}: {what}, not a regular file: only regular files are read")
    finally:
        if fd >= 0:
            os.close(fd)


def read_stream(fd: int, path: object, stop: threading.Event | None = None, limit: int = STREAM_LIMIT) -> bytes:
    """All bytes of a non-blocking descriptor until end of file, checking `stop` every 0.1 s."""
    chunks: list[bytes] = []
    total = 0
    while True:
        if stop is not None and stop.is_set():
            raise InputError(f"{shown(path)}: reading stopped (run interrupted)")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise InputError(f"{shown(path)}: more than {limit:,} bytes: too large for an image")
        chunks.append(chunk)
