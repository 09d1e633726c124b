"""Video clips as inputs: each clip becomes one input per frame, run through the same batched
pipeline as photos; what is per clip (its decoder, its output video, its manifest entry) is here.

A clip is recognised by content (`video.is_video`), wherever it is found. Its frames are counted
by demuxing before the run (no decoding), so every frame has its outputs planned and recorded
like a photo: `out/clip/000000.png ...`, resumable with --skip-existing. A clip whose demuxing
stops early (truncated, corrupt) gives the frames before that point and a failure naming it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DPTError
from ..text import shown
from . import video
from .inputs import InputItem, InputProblem, looks_like_image_name
from .manifest import FAILED, INTERRUPTED, OK, PENDING, FileRecord
from .reading import InputError

VIDEO_FORMATS = ("video", "video-side-by-side", "video16")  # -o NAME.mp4 (colour, or side by side), -o NAME.mkv


@dataclass(eq=False)
class Clip:
    """One video input: what probing found, and its decoder once the run opens it."""

    path: Path
    rel: Path
    info: video.VideoInfo
    reader: video.FrameReader | None = None
    sink: object | None = None  # video_sink.VideoSink while the run writes -o NAME.mp4 / NAME.mkv
    video_out: bool = False  # written as one video (not a frame folder)

    def name(self, frame: int) -> str:
        return f"{shown(self.path)} frame {frame}"

    def digits(self) -> int:
        """Frame numbers in names: six digits, more for longer clips (names sort in time order)."""
        return max(6, len(str(self.info.frames - 1)))

    def frame(self, index: int, stop: threading.Event | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB of frame `index` (see open)."""
        if self.reader is None:
            raise DPTError(f"{self.name(index)}: the clip was not opened")
        return self.reader.frame(index, stop)

    def open(self, wanted: list[int]) -> None:
        self.reader = video.FrameReader(self.path, self.info, wanted)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def expand_clips(items: list[InputItem], problems: list[InputProblem]) -> tuple[list[InputItem], list[InputProblem]]:
    """Every clip among `items` replaced by its frames (in place, in order); clips that cannot be
    read become problems (one line each); a clip cut short keeps its frames and reports where.
    A file named as an image is an image (as in folder scans): only the others are sniffed."""
    out: list[InputItem] = []
    for item in items:
        if item.data is not None or item.stream or looks_like_image_name(item.path.name) or not video.is_video(item.path):
            out.append(item)
            continue
        if not video.available():
            problems.append(InputProblem(str(item.path), f"a video clip: reading it needs PyAV, an optional extra: {video.EXTRA}"))
            continue
        try:
            info = video.probe(item.path)
        except InputError as exc:
            problems.append(InputProblem(str(item.path), _without_name(str(exc), item.path)))
            continue
        clip = Clip(item.path, item.rel, info)
        out.extend(replace(item, frame=k, clip=clip) for k in range(info.frames))
        if info.stopped:
            problems.append(InputProblem(str(item.path), f"{info.stopped}: the clip is truncated or corrupt; its first {info.frames} frame(s) are processed"))
    return out, problems


def _without_name(message: str, path: Path) -> str:
    prefix = f"{shown(path)}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def frame_name(item: InputItem, full: bool) -> Path:
    """Where a frame's outputs go under -o DIR, before their suffix: `clip/000012` (with the
    clip's extension, `clip.mp4/000012`, when two inputs would share the folder)."""
    rel = item.rel
    return rel.parent / (rel.name if full else rel.stem) / f"{item.frame:0{item.clip.digits()}d}"


class Clips:
    """The clips of one run (by the items that are their frames): decoders, output videos."""

    def __init__(self, items: list[InputItem]) -> None:
        self.items = items
        self.all = list({id(item.clip): item.clip for item in items if item.clip is not None}.values())

    def __bool__(self) -> bool:
        return bool(self.all)

    def open(self, todo: list[int], targets: list[dict[str, Path]]) -> None:
        """Decoders for the frames of `todo`, and -o NAME.mp4 / NAME.mkv's video."""
        for clip in self.all:
            clip.open([self.items[i].frame for i in todo if self.items[i].clip is clip])
        for item, outs in zip(self.items, targets):
            fmt = next((f for f in outs if f in VIDEO_FORMATS), None)
            if fmt is not None and item.clip.sink is None:
                from .video_sink import COLOR, GRAY16, VideoSink

                info = item.clip.info
                kind = GRAY16 if fmt == "video16" else COLOR
                item.clip.sink = VideoSink(outs[fmt], kind, info.frames, info.fps, info.time_base, info.pts)
                item.clip.video_out = True

    def put(self, i: int, image: np.ndarray) -> None:
        """Input `i`'s frame of its output video."""
        self.items[i].clip.sink.put(self.items[i].frame, image)

    def skip(self, i: int) -> None:
        """Input `i` failed: if it is a frame of an output video, the video goes on without it."""
        clip = self.items[i].clip
        if clip is not None and clip.sink is not None:
            clip.sink.skip(self.items[i].frame)

    def close(self, records: list[FileRecord], complete: bool) -> None:
        """Finish each output video (renamed into place), or drop it; its frames' records say
        which. The decoders are closed."""
        for clip in self.all:
            clip.close()
            sink, clip.sink = clip.sink, None
            if sink is None:
                continue
            frames = [r for r, item in zip(records, self.items) if item.clip is clip]
            if not complete:
                sink.abort()
                for r in frames:
                    if r.status in (OK, PENDING):
                        r.status, r.error = INTERRUPTED, "run interrupted before the video was complete"
                continue
            try:
                sink.finish()
            except DPTError as exc:
                for r in frames:
                    if r.status == OK:
                        r.status, r.error = FAILED, shown(exc)

    def entries(self, records: list[FileRecord], kept: dict[int, tuple[float, float]], fixed: bool) -> list[dict]:
        """The manifest's entry per clip: frames, rate, time base, where it stopped, and each
        frame's own min and max of its depth where known (`kept` by the deferral, by item index;
        else a frame normalised alone; None for a frame not run, or one under a fixed --range)."""
        entries = []
        for clip in self.all:
            mine = [i for i, item in enumerate(self.items) if item.clip is clip]
            own = [kept.get(i) or (None if fixed or records[i].min is None else (records[i].min, records[i].max)) for i in mine]
            info = clip.info
            entries.append({
                "input": str(clip.path),
                "frames": info.frames,
                "done": sum(records[i].status == OK for i in mine),
                "size": [info.height, info.width],
                "fps": str(info.fps) if info.fps else None,
                "time_base": str(info.time_base),
                **({"stopped": info.stopped} if info.stopped else {}),
                "frame_min": [r[0] if r else None for r in own],
                "frame_max": [r[1] if r else None for r in own],
            })
        return entries


def collapse(records: list[FileRecord], items: list[InputItem], base: int) -> list[FileRecord]:
    """Records for the manifest: a clip written as one video is one record (frames counted,
    the first failure kept), not one per frame. `base`: where the items' records start."""
    out = records[:base]
    seen: dict[int, FileRecord] = {}
    for record, item in zip(records[base:], items):
        clip = item.clip
        if clip is None or not clip.video_out:
            out.append(record)
            continue
        whole = seen.get(id(clip))
        if whole is None:
            whole = seen[id(clip)] = replace(record, frames=clip.info.frames, frame=None, status=OK, error=None, min=None, max=None)
            out.append(whole)
        if record.status != OK and whole.status == OK:
            whole.status, whole.error = record.status, record.error
    return out


