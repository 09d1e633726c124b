"""Paths and messages as text that is safe to print and to store as strict UTF-8 JSON.

File names on Linux are bytes. Python hands them over as `str` with undecodable bytes smuggled in
as lone surrogates (PEP 383), which a strict UTF-8 stream refuses, and a name may hold a newline
or an escape sequence that would break the one-line error format or drive the terminal. `shown`
renders any such text unambiguously on one line; `raw_b64` keeps the exact bytes where the
readable form cannot.
"""

from __future__ import annotations

import base64
import errno
import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(match: re.Match[str]) -> str:
    c = match.group(0)
    return _NAMED.get(c) or f"\\x{ord(c):02x}"


def shown(text: object) -> str:
    """`text` (a str, a Path, anything) on one printable line: undecodable bytes as `\\xNN`,
    control characters as `\\n`, `\\t`, `\\xNN`. Ordinary Unicode names are unchanged."""
    s = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if isinstance(s, bytes):
        s = s.decode("utf-8", "surrogateescape")
    if any("\ud800" <= c <= "\udfff" for c in s):
        s = "".join(_escape_surrogate(c) if "\ud800" <= c <= "\udfff" else c for c in s)
    return _CONTROL.sub(_escape_control, s)


def _escape_surrogate(c: str) -> str:
    # U+DC80..U+DCFF stand for the undecodable bytes 0x80..0xFF of a file name (PEP 383)
    return f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else f"\\u{ord(c):04x}"


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_OS_REASONS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "symbolic link loop",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "no such file (a parent is not a directory)",
    errno.EISDIR: "is a directory, not an image",
}


def os_reason(exc: OSError) -> str:
    """What an OSError met while opening or stat-ing a path means, in a few words."""
    return _OS_REASONS.get(exc.errno) or (exc.strerror or type(exc).__name__).lower()


def raw_b64(path: object) -> str | None:
    """The base64 of a path's bytes when `shown` cannot give them back exactly, else None."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a surrogate no file system byte stands for: keep it as UTF-16-ish
        raw = text.encode("utf-8", "surrogatepass")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")
    return None if shown(text) == text else base64.b64encode(raw).decode("ascii")
