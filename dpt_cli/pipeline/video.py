"""Video inputs: containers recognised by content, probed by demuxing (no decoding), and decoded
in order for several reader threads.

PyAV is an optional extra, imported inside the functions that need it: this module imports, and
`is_video` works, without it (and without numpy, so that `--help` stays light).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..text import first_line, shown
from .budget import Stopped
from .reading import InputError, open_input

if TYPE_CHECKING:
    import numpy as np

EXTRA = "pip install 'dpt-cli[video]'"
SEEK_AHEAD = 48  # frames: a wanted frame further ahead than this is reached by seeking, not decoding
_SNIFF = 600  # bytes is_video reads: MPEG-TS shows three sync bytes by 376 (M2TS by 388)
# ISO BMFF brands of still images (HEIF, AVIF, ...) and of audio, which share mp4's `ftyp` box
_NOT_VIDEO_BRANDS = {
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"mif2",
    b"msf1", b"miaf", b"avif", b"avis", b"avci", b"jpeg", b"crx ", b"M4A ", b"M4B ", b"M4P ",
}  # fmt: skip
_QUICKTIME = {b"moov", b"mdat", b"wide", b"free", b"skip"}  # first boxes of old .mov files, no `ftyp`
_MAGIC = (
    b"\x1a\x45\xdf\xa3",  # Matroska, WebM (EBML)
    b"\x00\x00\x01\xba",  # MPEG program stream
    b"FLV\x01",
    b"OggS",
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF, WMV (header object GUID)
)


def available() -> bool:
    """Whether PyAV can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def require(what: str) -> None:
    """Raise a one-line UsageError naming `what` unless PyAV is installed."""
    if not available():
        raise UsageError(f"{what}: video needs PyAV, an optional extra: {EXTRA}")


def is_video(path: Path) -> bool:
    """Whether `path` holds a video container, judged by its first bytes (not its name, no PyAV).

    False for still images, for anything unreadable, and for FIFOs and devices (never blocks).
    """
    try:
        with open_input(path) as f:
            head = f.read(_SNIFF)
    except Exception:  # noqa: BLE001 (unreadable for whatever reason: not a video to take)
        return False
    return looks_like_video(head)


def looks_like_video(head: bytes) -> bool:
    """Whether a file's first bytes (up to 600: MPEG-TS needs them) are a video container's."""
    if head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")  # brands: major at 8, minor version at 12, then compatible
        brands = {head[i : i + 4] for i in range(8, min(max(size, 16), len(head)) - 3, 4) if i != 12}
        return not brands & _NOT_VIDEO_BRANDS
    if head[:4] == b"RIFF":
        return head[8:12] == b"AVI "
    # MPEG-TS: 188-byte packets that start with 0x47; M2TS (AVCHD .mts): 192, after a 4-byte prefix
    # (three in a row: two could be chance in a text file)
    ts = any(len(head) > start + 2 * step and all(head[start + k * step] == 0x47 for k in range(3)) for start, step in ((0, 188), (4, 192)))
    return ts or head[4:8] in _QUICKTIME or head.startswith(_MAGIC)


@dataclass(frozen=True)
class VideoInfo:
    """What demuxing a clip found. Frames are counted, and indexed from 0, in display order."""

    frames: int  # video frames whose packets demuxed whole
    width: int  # pixels
    height: int
    fps: Fraction | None  # the stream's average frame rate, None if unknown
    time_base: Fraction  # seconds per pts unit
    pts: tuple[int, ...]  # the frames' presentation timestamps, ascending, in time_base; () if unknown
    stopped: str | None  # None when the whole file demuxed; else why and where it stops


def _av(path: Path) -> Any:
    """The av module, or a UsageError naming `path`."""
    require(shown(path))
    import av

    return av


def reason(exc: BaseException) -> str:
    """FFmpeg's own words for an error, without the errno and file name PyAV adds around them."""
    return first_line(getattr(exc, "strerror", None) or exc)


def _after(count: int) -> str:
    return f"after frame {count - 1}" if count > 0 else "before its first frame"


def _seconds(tag: str | None) -> float | None:
    """Seconds in a Matroska DURATION tag ('HH:MM:SS.nnnnnnnnn'), None if absent or malformed."""
    try:
        h, m, s = (tag or "").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return None


def _open(path: Path) -> tuple[Any, Any]:
    """(file, av container) for `path`. The file comes from open_input, so that a FIFO named like a
    video is refused instead of blocking av.open forever."""
    av = _av(path)
    f = open_input(path)
    try:
        return f, av.open(f, metadata_errors="ignore")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        f.close()
        raise InputError(f"{shown(path)}: cannot read as a video ({reason(exc)})") from None


def probe(path: Path) -> VideoInfo:
    """Demux `path`'s first video stream (without decoding) to count its frames and timestamps.

    Raises InputError for a file that is not a video, has no video stream, or no whole frame.
    A file cut short, or broken part-way, gives the frames before the break and `stopped`.
    """
    av = _av(path)
    f, container = _open(path)
    with f, container:
        if not container.streams.video:
            raise InputError(f"{shown(path)}: cannot read as a video (no video stream)")
        stream = container.streams.video[0]
        pts: list[int | None] = []
        end, stopped, seen = None, None, 0
        try:
            for packet in container.demux(stream):
                seen += packet.size > 0
                if packet.size == 0 or packet.is_discard:  # the final flush; before an edit list's start
                    continue
                if packet.is_corrupt:  # cut short (an mp4 truncated inside a frame): not a frame
                    stopped = stopped or f"a packet is cut short {_after(len(pts))}"
                    continue
                pts.append(packet.pts)
                if packet.pts is not None:
                    end = max(end or 0, packet.pts + (packet.duration or 0))
        except av.FFmpegError as exc:
            stopped = f"demuxing failed {_after(len(pts))} ({reason(exc)})"
        count, ctx, fps = len(pts), stream.codec_context, stream.average_rate or None
        time_base = Fraction(stream.time_base or (1 / fps if fps else Fraction(1, 25)))
        if count == 0 or not ctx.width or not ctx.height:
            why = "no frame size" if count else "no frames" + (f"; {stopped}" if stopped else "")
            raise InputError(f"{shown(path)}: cannot read as a video ({why})")
        if stopped is None and stream.frames > seen:  # mp4 lists every frame in its index
            stopped = f"demuxing stopped {_after(count)}: the index lists {stream.frames} frames"
        if stopped is None and end is not None:  # Matroska states a duration, which a cut file falls short of
            stated = float(stream.duration * time_base) if stream.duration else _seconds(stream.metadata.get("DURATION"))
            reached = float((end - (stream.start_time or 0)) * time_base)
            if stated and stated - reached > 2 / float(fps or 25):
                stopped = f"demuxing stopped {_after(count)}, at {reached:.2f} s of the stated {stated:.2f} s"
        known = [p for p in pts if p is not None]
        # frames are indexed by pts only where each has its own; else in the order they decode
        unique = len(known) == count and len(set(known)) == count
        return VideoInfo(count, ctx.width, ctx.height, fps, time_base, tuple(sorted(known)) if unique else (), stopped)


class FrameReader:
    """Decodes one clip's frames in order for several reader threads.

    Threads ask for `wanted` frames in roughly increasing order. The decoder runs sequentially,
    under a lock; a wanted frame decoded before it is asked for waits in a buffer, the others are
    dropped at once. A frame far ahead (or behind) is reached by seeking to a keyframe before it.
    """

    def __init__(self, path: Path, info: VideoInfo, wanted: Iterable[int]) -> None:
        self.path, self.info = path, info
        self._wanted = set(wanted)  # not yet produced; the frame asked for counts as wanted too
        self._index_of = {p: i for i, p in enumerate(info.pts)}
        self._lock = threading.Lock()
        self._buffer: dict[int, Any] = {}  # index -> av.VideoFrame decoded but not yet asked for
        self._file: Any = None
        self._container: Any = None
        self._frames: Iterator[Any] = iter(())
        self._next = 0  # the index the decoder produces next, as far as known
        self._last = -1  # the highest index produced so far
        self._sought = False  # no frame produced since the last seek
        self._failed = self._closed = False

    def frame(self, index: int, stop: threading.Event | None = None) -> np.ndarray:
        """Frame `index` as (H, W, 3) uint8 RGB, C-contiguous and writable.

        Raises InputError where the clip cannot be decoded up to it, Stopped once `stop` is set.
        """
        if not 0 <= index < self.info.frames:
            raise IndexError(f"frame {index} of a clip of {self.info.frames}")
        while not self._lock.acquire(timeout=0.1):
            if stop is not None and stop.is_set():
                raise Stopped
        try:
            if self._closed:
                raise Stopped
            decoded = self._buffer.pop(index, None)
            if decoded is None:
                decoded = self._decode_to(index, stop)
        finally:
            self._lock.release()
        # outside the lock: the colour conversion releases the GIL, so threads convert in parallel
        image = decoded.to_ndarray(format="rgb24")
        if decoded.format.name == "rgb24" or not image.flags.c_contiguous or not image.flags.writeable:
            image = image.copy()  # a view of the decoder's own frame (rgb24 clips) or of padded rows
        return image

    def close(self) -> None:
        """Close the clip; frames asked for afterwards raise Stopped. Safe to call twice."""
        with self._lock:
            self._closed = True
            self._buffer.clear()
            self._shut()

    def _decode_to(self, index: int, stop: threading.Event | None) -> Any:
        av = _av(self.path)
        if self._failed:
            raise self._error(index)
        if self._container is None:
            self._start()
        back = 0
        if index < self._next or (self._index_of and index - self._next > SEEK_AHEAD):
            self._seek(index)
        while True:
            if stop is not None and stop.is_set():
                raise Stopped
            try:
                decoded = next(self._frames, None)
            except av.FFmpegError:
                decoded = None
            i = None if decoded is None else self._index_of.get(decoded.pts) if self._index_of else self._next
            if decoded is not None and i is None:  # a frame the probe did not count (cut short)
                continue
            if self._sought and (i is None or i > index):
                # the seek landed past the frame (reordered frames, an inexact seek in MPEG-TS):
                # go further back, and in the end start over
                back = max(2 * back, 4)
                self._seek(index - back) if index - back > 0 else self._start()
                continue
            if i is None:  # the end, or a break the decoder cannot get past: give up on the clip
                self._failed = True
                self._shut()
                raise self._error(index)
            self._sought = False
            self._next, self._last = i + 1, max(self._last, i)
            if i == index or i in self._wanted:
                self._wanted.discard(i)
                if i == index:
                    return decoded
                self._buffer[i] = decoded
            if i > index:  # passed it: the decoder dropped that frame
                raise InputError(f"{shown(self.path)}: frame {index}: cannot decode (the decoder skipped it: corrupt)")

    def _error(self, index: int) -> InputError:
        where = f"after frame {self._last}" if self._last >= 0 else "before its first frame"
        return InputError(f"{shown(self.path)}: frame {index}: cannot decode (the clip stops {where}: truncated or corrupt)")

    def _start(self) -> None:
        """Open the clip (again), to decode from its first frame."""
        self._shut()
        self._file, self._container = _open(self.path)
        if not self._container.streams.video:
            self._shut()
            raise InputError(f"{shown(self.path)}: cannot read as a video (no video stream)")
        self._container.streams.video[0].thread_type = "AUTO"  # FFmpeg's own decoding threads
        self._frames, self._next, self._sought = self._decode(), 0, False

    def _decode(self, sought: bool = False) -> Iterator[Any]:
        """Frames decoded from the container's position on; after a seek, from the first keyframe
        only (some decoders show garbage before it). After a demuxing or decoding error, the
        frames the decoder still holds (from whole packets), then the error."""
        av, stream = _av(self.path), self._container.streams.video[0]
        try:
            for packet in self._container.demux(stream):
                sought = sought and not packet.is_keyframe and packet.size > 0
                if not sought and not packet.is_corrupt:  # cut short: the decoder would refuse it
                    yield from packet.decode()  # the final (empty) packet drains the decoder
        except av.FFmpegError:
            try:
                yield from stream.codec_context.decode(None)
            except av.FFmpegError:
                pass
            raise

    def _seek(self, index: int) -> None:
        """Seek to the keyframe at or before frame `index`; without timestamps, start over."""
        av = _av(self.path)
        if self._index_of:
            try:
                # seek flushes the decoder too: no frame from before the seek comes out after it
                self._container.seek(self.info.pts[index], stream=self._container.streams.video[0], backward=True, any_frame=False)
                self._frames, self._next, self._sought = self._decode(sought=True), index, True
                return
            except av.FFmpegError:
                pass  # a file that cannot seek: decode from the start
        self._start()

    def _shut(self) -> None:
        for thing in (self._container, self._file):
            if thing is not None:
                thing.close()
        self._file = self._container = None
        self._frames = iter(())
