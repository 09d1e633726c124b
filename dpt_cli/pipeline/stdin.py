"""`-` on the command line: a path list or one image's bytes, told apart by the first bytes.

The first 64 bytes are read (however slowly they come). An image starts with its format's
signature or holds NUL bytes in its header, and has bytes no text holds (control characters or
NULs); a path list is text (names may hold any byte but NUL, so `-0` separates names by NUL).
Text that starts like a signature (a file named `GIF89a.jpg`) stays a path list.
"""

from __future__ import annotations

import os
import re
from typing import IO

from ..errors import UsageError
from .video import looks_like_video
from .reading import InputError, read_stream

SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a", b"GIF89a",
    b"II*\x00", b"MM\x00*",  # TIFF
    b"\x00\x00\x00\x0cjP  ", b"\xffO\xff\x51",  # JPEG 2000
    b"qoif",
    b"\x00\x00\x01\x00",  # ICO
)
PNM = re.compile(rb"^P[1-7]\s+[0-9#]")
HEAD = 64  # bytes looked at
TEXT_CONTROLS = frozenset(b"\t\n\r\x1b")  # control bytes a path list may well hold


def read_head(stream: IO) -> bytes:
    """Up to HEAD bytes from the start of `stream`, fewer only at end of file."""
    raw = getattr(stream, "buffer", stream)
    read = getattr(raw, "read1", raw.read)
    head = b""
    while len(head) < HEAD:
        chunk = read(HEAD - len(head))
        if not chunk:
            break
        head += chunk if isinstance(chunk, bytes) else os.fsencode(chunk)
    return head


def looks_like_image(head: bytes) -> bool:
    """Whether the first bytes on stdin are an image's rather than a path list's."""
    binary = b"\0" in head or any(b < 0x20 and b not in TEXT_CONTROLS for b in head)
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    heif = head[4:8] == b"ftyp"
    bmp = head[:2] == b"BM" and head[6:10] == b"\0\0\0\0"  # its reserved fields are zero
    signed = head.startswith(SIGNATURES) or webp or heif or bmp or bool(PNM.match(head))
    nuls = head.count(b"\0")
    # NULs between printable names and no control byte: a NUL-separated list, not an image
    nul_list = nuls and all(b >= 0x20 or b in TEXT_CONTROLS or b == 0 for b in head)
    return binary and (signed or (nuls >= 2 and not nul_list))


def check(head: bytes, null: bool) -> bool:
    """True when stdin holds an image; UsageError when it holds what the options do not expect."""
    if looks_like_video(head):  # before images: an MP4's `ftyp` box also starts HEIF and AVIF stills
        raise UsageError("-: stdin holds a video clip; give the clip as a file (dpt reads a clip twice: to count its frames, then to decode them)")
    image = looks_like_image(head)
    if image and null:
        raise UsageError("-0 reads a NUL-separated path list, but stdin holds an image's bytes: drop -0")
    if not image and not null and b"\0" in head and b"\n" not in head:
        raise UsageError("-: stdin holds NUL-separated names: add -0 (--null) to read them as a path list")
    return image


def read_image_bytes(stream: IO, head: bytes) -> bytes:
    """The image on stdin: `head` and all the rest, interruptible by Ctrl-C, refused beyond
    reading.STREAM_LIMIT."""
    raw = getattr(stream, "buffer", stream)
    try:
        fd = raw.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd < 0:  # in-memory streams (embedding callers, tests)
        data = raw.read()
        return head + (data if isinstance(data, bytes) else os.fsencode(data))
    buffered = raw.peek(1 << 20) if hasattr(raw, "peek") else b""
    raw.read(len(buffered))  # what the buffer holds is no longer in the descriptor
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        return head + buffered + read_stream(fd, "-")
    except InputError as exc:
        raise UsageError(str(exc)) from None
    finally:
        os.set_blocking(fd, blocking)
