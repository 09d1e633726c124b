"""Running the real `dpt` entry point: in-process (fast) or as a subprocess (signals, ttys)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    out: str
    err: str
    out_bytes: bytes = b""


def run_cli(*args: str, stdin: str | bytes = "") -> Result:
    """Invoke `dpt ARGS` through dpt_cli.cli.main, capturing exit code, stdout and stderr.
    stdin and stdout are text streams over bytes, as a process's are (`.buffer` included)."""
    from dpt_cli.cli import main

    raw_in = stdin if isinstance(stdin, bytes) else stdin.encode("utf-8", "surrogateescape")
    raw_out = io.BytesIO()
    out = io.TextIOWrapper(raw_out, encoding="utf-8", errors="replace", write_through=True)
    err = io.StringIO()
    old_argv, old_stdin = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["dpt", *map(str, args)], io.TextIOWrapper(io.BufferedReader(io.BytesIO(raw_in)), encoding="utf-8")
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.stdin = old_argv, old_stdin
    out.flush()
    data = raw_out.getvalue()
    return Result(code, data.decode("utf-8", "replace"), err.getvalue(), data)


def spawn(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dpt_cli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
