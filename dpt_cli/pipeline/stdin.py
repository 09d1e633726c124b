"""`-` on the command line: a path list or one image's bytes, told apart by the first bytes.

A path list is text; an image starts with its format's signature, and every common format
either has one below or holds NUL bytes in its header (a file name never holds one; a single NUL
is taken as a malformed path list, reported line by line, not as an image).
Reading peeks without consuming, so a path list is then read whole as before.
"""

from __future__ import annotations

import os
import re
from typing import IO

from .reading import InputError, read_stream

SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a", b"GIF89a",
    b"II*\x00", b"MM\x00*",  # TIFF
    b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ",  # JPEG 2000
    b"qoif",
    b"\x00\x00\x01\x00",  # ICO
)
PNM = re.compile(rb"^P[1-7]\s+[0-9#]")
HEAD = 64  # bytes looked at


def _head(stream: IO) -> bytes:
    raw = getattr(stream, "buffer", None)
    if raw is not None and hasattr(raw, "peek"):
        return raw.peek(HEAD)[:HEAD]
    if hasattr(stream, "seekable") and stream.seekable():  # in-memory streams (embedding callers)
        where = stream.tell()
        head = stream.read(HEAD)
        stream.seek(where)
        return head if isinstance(head, bytes) else os.fsencode(head)
    return b""


def looks_like_image(head: bytes) -> bool:
    """Whether the first bytes on stdin are an image's rather than a path list's."""
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    heif = head[4:8] == b"ftyp"
    bmp = head[:2] == b"BM" and head[6:10] == b"\0\0\0\0"  # its reserved fields are zero
    return head.count(b"\0") >= 2 or head.startswith(SIGNATURES) or webp or heif or bmp or bool(PNM.match(head))


def stdin_holds_image(stream: IO) -> bool:
    return looks_like_image(_head(stream))


def read_image_bytes(stream: IO) -> bytes:
    """All of stdin (one image), interruptible by Ctrl-C, refused beyond reading.STREAM_LIMIT."""
    raw = getattr(stream, "buffer", stream)
    if hasattr(raw, "fileno"):
        try:
            fd = raw.fileno()
        except (OSError, ValueError):
            fd = -1
        if fd >= 0:
            buffered = raw.peek(1 << 20) if hasattr(raw, "peek") else b""
            raw.read(len(buffered))  # what peek holds is no longer in the descriptor
            blocking = os.get_blocking(fd)
            os.set_blocking(fd, False)
            try:
                return buffered + read_stream(fd, "-")
            finally:
                os.set_blocking(fd, blocking)
    data = raw.read()
    if not isinstance(data, bytes):
        raise InputError("-: stdin holds text, not an image")
    return data
