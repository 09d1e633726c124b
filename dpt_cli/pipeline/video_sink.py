"""Output videos, written atomically like every other output (see atomic.py).

PyAV and numpy are imported on the first frame only: this module imports without them.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DPTError
from ..text import shown
from .atomic import _SUFFIX, _UMASK, temporary_prefix
from .video import reason, require

if TYPE_CHECKING:
    import numpy as np

COLOR, GRAY16 = "color", "gray16"
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709, and AVCOL_RANGE_MPEG (limited range), in FFmpeg's enums


class VideoSink:
    """One output video, written atomically: frames go into a temporary file beside `path`, renamed
    over it when every frame is in.

    COLOR: H.264 (mpeg4 where FFmpeg lacks libx264), yuv420p BT.709, crf 18. yuv420p needs even
    sizes: an odd width or height is padded by repeating the last column or row, so such a video is
    1 pixel wider or taller than its frames. GRAY16: lossless ffv1 gray16le (.mkv, or .mp4 which
    FFmpeg reads but few players do). Timing: the source's pts (in `time_base`) when `pts` gives one
    per frame, shifted to start at 0; else frame i at i / fps. `fps` None means 25.
    """

    def __init__(self, path: Path, kind: str, frames: int, fps: Fraction | None, time_base: Fraction, pts: Sequence[int] = ()) -> None:
        if kind not in (COLOR, GRAY16):
            raise ValueError(f"unknown video kind {kind!r}")
        require(shown(path))
        self._format = _FORMATS.get(path.suffix.lower())
        if self._format is None:
            raise DPTError(f"{shown(path)}: a video is written as .mp4, .m4v, .mov or .mkv")
        if kind == GRAY16 and self._format == "mov":
            raise DPTError(f"{shown(path)}: .mov cannot hold 16-bit depth video (ffv1): use .mkv")
        self.path, self.kind, self.frames = path, kind, frames
        self.fps = Fraction(fps) if fps else Fraction(25)
        timed = frames > 0 and len(pts) == frames and all(a < b for a, b in itertools.pairwise(pts))
        self._pts = [int(p - pts[0]) for p in pts] if timed else list(range(frames))
        self._time_base = Fraction(time_base) if timed else 1 / self.fps
        self._lock = threading.Lock()
        self._waiting: dict[int, np.ndarray | None] = {}  # frames put (None: skipped) before their turn
        self._next = self._written = 0  # the index to encode next; frames encoded
        self._tmp: str | None = None
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # (H, W) of the frames
        self._done = False
        self._failed: str | None = None  # why the video was dropped (an encoder or disk error)

    def put(self, index: int, image: np.ndarray) -> None:
        """Frame `index`: COLOR (H, W, 3) uint8 RGB, GRAY16 (H, W) uint16. Encoded in index order;
        until its turn the sink keeps `image` itself (not a copy): do not change it afterwards."""
        import numpy as np

        ndim, dtype = (3, np.uint8) if self.kind == COLOR else (2, np.uint16)
        if image.ndim != ndim or image.dtype != dtype or image.shape[2:] not in ((), (3,)):
            raise ValueError(f"{self.kind} frames are {ndim}-d {np.dtype(dtype).name}, not {image.shape} {image.dtype}")
        with self._lock:
            if self._failed:
                return  # the video is already dropped; finish() tells why
            self._check(index)
            size = image.shape[:2]
            if self._size is None:
                self._open(size)
            elif size != self._size:
                (h, w), (h0, w0) = size, self._size
                raise DPTError(f"{shown(self.path)}: frame {index} is {w}x{h}, the frames before {w0}x{h0}")
            self._waiting[index] = image
            self._drain()

    def skip(self, index: int) -> None:
        """Frame `index` will never come (it failed): the video goes on without it."""
        with self._lock:
            if self._failed:
                return
            self._check(index)
            self._waiting[index] = None
            self._drain()

    def finish(self) -> int:
        """Flush and close the video, rename it over `path`; return the frames written.

        Raises DPTError (and writes nothing) if a frame was neither put nor skipped, or none was put.
        """
        with self._lock:
            if self._failed:
                raise DPTError(self._failed)
            self._check(None)
            if self._next < self.frames or self._written == 0:
                self._abort()
                why = f"frame {self._next} never came" if self._next < self.frames else "no frame came"
                raise DPTError(f"{shown(self.path)}: video not written: {why}")
            self._encode(None)
            try:
                self._guard(self._container.close)
                self._container = None
                os.replace(self._tmp, self.path)
            except OSError as exc:
                self._abort()
                raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(self.path)) from None
            self._tmp, self._done = None, True
            return self._written

    def abort(self) -> None:
        """Drop the video: the temporary file goes, nothing is left at `path`. Idempotent."""
        with self._lock:
            self._abort()

    def _check(self, index: int | None) -> None:
        if self._done:
            raise DPTError(f"{shown(self.path)}: video already finished or aborted")
        if index is not None and (not self._next <= index < self.frames or index in self._waiting):
            raise ValueError(f"frame {index} put twice, or not in 0..{self.frames - 1}")

    def _open(self, size: tuple[int, int]) -> None:
        import av

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(prefix=temporary_prefix(self.path.name), suffix=_SUFFIX, dir=self.path.parent)
            try:
                os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get ordinary permissions
            finally:
                os.close(fd)
        except OSError as exc:  # named by the final path, as atomic.py does
            self._abort()
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(self.path)) from None
        # the temporary name ends in .partial: the format cannot be guessed from it
        self._container = self._guard(av.open, self._tmp, "w", format=self._format)
        (h, w), codec = size, "ffv1"
        if self.kind == COLOR:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            if codec == "mpeg4" and self._time_base.denominator > 65535:  # MPEG-4 part 2's limit
                self._pts, self._time_base = list(range(self.frames)), 1 / self.fps
        stream = self._guard(self._container.add_stream, codec, rate=self.fps)
        if self.kind == COLOR:
            stream.pix_fmt, stream.height, stream.width = "yuv420p", h + h % 2, w + w % 2
            ctx = stream.codec_context
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = ctx.color_range = _BT709
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "fast"}
            else:
                stream.bit_rate = int(stream.width * stream.height * float(self.fps) * 0.4)
        else:
            stream.pix_fmt, stream.height, stream.width = "gray16le", h, w
            # level 3: slices, encoded in parallel, each with a CRC that makes damage detectable
            stream.options, stream.thread_type = {"level": "3", "slicecrc": "1"}, "SLICE"
        # the source's own time base: rounding variable-rate timestamps to 1/fps could repeat one
        stream.codec_context.time_base = stream.time_base = self._time_base
        self._stream, self._size = stream, size

    def _drain(self) -> None:
        """Encode the frames whose turn has come."""
        while self._next in self._waiting:
            image = self._waiting.pop(self._next)
            if image is not None:
                self._encode(self._guard(self._frame, image, self._next))
                self._written += 1
            self._next += 1

    def _frame(self, image: np.ndarray, index: int) -> Any:
        import av
        import numpy as np

        if self.kind == GRAY16:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray16le")
        else:
            h, w = image.shape[:2]
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else image
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts, frame.time_base = self._pts[index], self._time_base
        return frame

    def _encode(self, frame: Any) -> None:
        """Encode `frame` (None: flush the encoder) and write its packets."""
        self._guard(lambda: self._container.mux(self._stream.encode(frame)))

    def _guard(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """call(*args, **kwargs); a PyAV error drops the video and becomes a one-line DPTError."""
        import av

        try:
            return call(*args, **kwargs)
        except (av.FFmpegError, ValueError, MemoryError) as exc:
            self._abort()
            self._failed = f"{shown(self.path)}: cannot write the video ({reason(exc)})"
            raise DPTError(self._failed) from None

    def _abort(self) -> None:
        self._done = True
        self._waiting.clear()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001, S110 (a broken output goes anyway)
                pass
            self._container = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None
