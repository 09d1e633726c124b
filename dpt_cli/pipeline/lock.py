"""One run at a time per output folder: an exclusive lock on `dpt-run.lock`.

Two runs into one folder would silently replace each other's files and leave a manifest that
describes the other run. The lock is a kernel `flock` on `FOLDER/dpt-run.lock`, so a run that dies
(even by SIGKILL) releases it at once: a leftover file with a dead pid is stale and simply taken
over. The file holds the holder's pid, start time and command line, to name it in the refusal.
Taking the lock is also the first write into the folder, so an output folder that cannot be
created or written is found before any model is loaded.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..processes import process_alive
from ..text import shown

LOCK_NAME = "dpt-run.lock"


class OutputLock:
    """Hold `folder`'s lock for the duration of a `with` block (creates the folder).

    `shared`: runs that each write one named file (`-o out/a.png`, often many in parallel, as
    `xargs -P` does) share the folder with each other, and are excluded only by a folder run.
    """

    def __init__(self, folder: Path, shared: bool = False) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.shared = shared
        self.fd = -1

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise UsageError naming the folder's problem or the other run."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"-o {shown(self.folder)}: cannot create the output folder ({_why(exc)})") from None
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self._still_ours(fd):  # its holder was just releasing it: try again
                    os.close(fd)
                    continue
                holder = _read(fd)
                os.close(fd)
                raise UsageError(f"{shown(self.folder)}: {holder}; wait for it, or choose another -o") from None
            except OSError:  # no flock on this file system: fall back to the pid it records
                self._by_pid(fd)
            if self._still_ours(fd):
                break
            os.close(fd)  # the file was removed by its releasing holder between open and flock
        self.fd = fd
        if not self.shared:
            self._record()

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            if self.shared:  # the last of the sharing runs removes the file
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(self.path)  # while still holding it: the next taker re-checks the inode
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise UsageError(f"-o {shown(self.folder)}: cannot write in the output folder ({_why(exc)})") from None

    def _still_ours(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _by_pid(self, fd: int) -> None:
        if self.shared:
            return
        try:
            pid = int(json.loads(os.pread(fd, 4096, 0) or b"{}").get("pid", 0))
        except (ValueError, AttributeError):
            pid = 0
        if pid and pid != os.getpid() and process_alive(pid):
            holder = _read(fd)
            os.close(fd)
            raise UsageError(f"{shown(self.folder)}: {holder}; wait for it, or choose another -o")

    def _record(self) -> None:
        info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": [shown(a) for a in sys.argv]}
        data = json.dumps(info).encode()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError as exc:
            self.release()
            raise UsageError(f"-o {shown(self.folder)}: cannot write in the output folder ({_why(exc)})") from None


def _read(fd: int) -> str:
    """Who holds the lock, in words, from what the holder recorded."""
    try:
        data = os.pread(fd, 4096, 0)
        if not data:  # shared holders record nothing
            return "dpt runs writing single files (-o FILE) are writing here"
        info = json.loads(data)
        return f"another dpt run is writing here (pid {info['pid']}, started {info['started']}: {' '.join(info['command'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another dpt run is writing here (pid unknown)"


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a file is in the way"
    return (exc.strerror or type(exc).__name__).lower()
