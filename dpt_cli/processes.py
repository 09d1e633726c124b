"""Whether a process named in a lock or a leftover file's name still runs."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's included)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any PID
        return False
    except PermissionError:
        return True
    return True
