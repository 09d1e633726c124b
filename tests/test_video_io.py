"""Video input and output: sniffing, probing, decoding for reader threads (seeks, truncated files)
and atomic output videos. Clips are generated small in tmp_path."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from video import decode_all, make_clip, pattern, truncate

from dpt_cli.errors import DPTError
from dpt_cli.pipeline.budget import Stopped
from dpt_cli.pipeline.reading import InputError
from dpt_cli.pipeline.video import FrameReader, available, is_video, probe
from dpt_cli.pipeline.video_sink import COLOR, GRAY16, VideoSink

needs_av = pytest.mark.skipif(not available(), reason="PyAV (the video extra) is not installed")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """name -> (path, frames as decoded plainly) for the clips shared by the tests here."""
    if not available():
        pytest.skip("PyAV (the video extra) is not installed")
    folder = tmp_path_factory.mktemp("clips")
    made = {}
    for name, frames in (("a.mp4", 24), ("a.mkv", 24), ("long.mp4", 120)):
        make_clip(folder / name, frames, gop=12)
        made[name] = (folder / name, decode_all(folder / name))
    return made


def _av_frames(path: Path) -> dict[int, np.ndarray]:
    """pts -> RGB frame, decoded plainly."""
    import av

    with av.open(str(path)) as container:
        return {f.pts: f.to_ndarray(format="rgb24") for f in container.decode(video=0)}


# --- is_video -------------------------------------------------------------------------------------


@needs_av
def test_is_video_by_content(clips, tmp_path):
    for name in ("a.mp4", "a.mkv"):
        assert is_video(clips[name][0])
        renamed = tmp_path / (name + ".bin")
        shutil.copy(clips[name][0], renamed)
        assert is_video(renamed)


def test_is_video_headers(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (8, 8), (10, 20, 30))
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF"):
        img.save(tmp_path / f"x.{fmt.lower()}", fmt)
        assert not is_video(tmp_path / f"x.{fmt.lower()}"), fmt
    heads = {
        "avi": (b"RIFF\x00\x10\x00\x00AVI LIST", True),
        "ts": ((b"\x47" + bytes(187)) * 3, True),
        "two-g-text": (b"G" + b"x" * 187 + b"G" + b"y" * 300, False),  # two sync bytes can be chance
        "flv": (b"FLV\x01\x05\x00\x00\x00\x09", True),
        "ogg": (b"OggS\x00\x02" + bytes(20), True),
        "asf": (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + bytes(8), True),
        "ps": (b"\x00\x00\x01\xba" + bytes(10), True),
        "webm": (b"\x1a\x45\xdf\xa3" + bytes(10), True),
        "mov": (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", True),
        "heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", False),
        "avif": (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", False),
        "mif1": (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", False),
        "m4a": (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom", False),
        "gif-like": (b"GIF89a" + bytes(300), False),
        "text": (b"just some text\n" * 20, False),
        "empty": (b"", False),
    }
    for name, (data, expected) in heads.items():
        (tmp_path / name).write_bytes(data)
        assert is_video(tmp_path / name) is expected, name


def test_is_video_never_blocks(tmp_path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    assert not is_video(fifo)  # a FIFO with no writer: open() would block forever
    assert not is_video(tmp_path)
    assert not is_video(tmp_path / "missing.mp4")


# --- probe ----------------------------------------------------------------------------------------


@needs_av
@pytest.mark.parametrize("name, time_base", [("a.mp4", None), ("a.mkv", Fraction(1, 1000))])
def test_probe(clips, name, time_base):
    info = probe(clips[name][0])
    assert (info.frames, info.width, info.height, info.fps, info.stopped) == (24, 128, 96, Fraction(24), None)
    assert time_base is None or info.time_base == time_base
    assert len(info.pts) == 24 and list(info.pts) == sorted(info.pts) and len(set(info.pts)) == 24
    # the pts of decoded frames are those of the packets, so frames can be indexed by them
    assert sorted(_av_frames(clips[name][0])) == list(info.pts)
    assert abs(float((info.pts[1] - info.pts[0]) * info.time_base) - 1 / 24) < 1e-3


@needs_av
def test_probe_refuses_what_is_not_a_video(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 10)
    with pytest.raises(InputError, match="notes.mp4: cannot read as a video"):
        probe(tmp_path / "notes.mp4")
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    fifo = tmp_path / "fifo.mkv"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):
        probe(fifo)


# --- FrameReader ----------------------------------------------------------------------------------


@needs_av
@pytest.mark.parametrize("name", ["a.mp4", "a.mkv"])
def test_reader_in_order(clips, name):
    path, expected = clips[name]
    reader = FrameReader(path, probe(path), range(24))
    try:
        for i, want in enumerate(expected):
            got = reader.frame(i)
            assert got.dtype == np.uint8 and got.shape == (96, 128, 3)
            assert got.flags.c_contiguous and got.flags.writeable
            np.testing.assert_array_equal(got, want)
    finally:
        reader.close()
        reader.close()
    if name == "a.mkv":  # lossless: the frames are those written
        np.testing.assert_array_equal(expected[5], pattern(5, (96, 128)))


@needs_av
def test_reader_threads_out_of_order(clips):
    path, expected = clips["a.mp4"]
    reader = FrameReader(path, probe(path), range(24))
    order = [1, 0, 3, 2, 5, 4, 8, 6, 7, 9, 12, 10, 11, 13, 15, 14, 16, 19, 17, 18, 20, 23, 21, 22]
    with ThreadPoolExecutor(4) as pool:
        got = dict(zip(order, pool.map(reader.frame, order)))
    reader.close()
    for i in range(24):
        np.testing.assert_array_equal(got[i], expected[i])
    assert not reader._buffer


@needs_av
def test_reader_seeks_past_a_gap(clips, monkeypatch):
    path, expected = clips["long.mp4"]
    info = probe(path)
    wanted = [0, 1, 2, 100, 101, 119]
    decoded = []
    real = FrameReader._decode

    def counting(self, *args, **kwargs):
        for frame in real(self, *args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(FrameReader, "_decode", counting)
    reader = FrameReader(path, info, wanted)
    for i in wanted:
        np.testing.assert_array_equal(reader.frame(i), expected[i])
    assert len(decoded) < 60, len(decoded)  # not the 120 of a plain decode: it sought twice
    np.testing.assert_array_equal(reader.frame(50), expected[50])  # behind the decoder: seeks back
    reader.close()


@needs_av
def test_reader_seeks_to_every_frame(clips):
    path, expected = clips["long.mp4"]
    info = probe(path)
    for k in range(52, 120, 7):
        reader = FrameReader(path, info, [0, k])
        np.testing.assert_array_equal(reader.frame(0), expected[0])
        np.testing.assert_array_equal(reader.frame(k), expected[k])
        reader.close()


@needs_av
def test_reader_without_timestamps(clips):
    """Without pts, frames are counted as they decode, and going back means decoding again."""
    path, expected = clips["long.mp4"]
    info = dataclasses.replace(probe(path), pts=())
    reader = FrameReader(path, info, range(0, 120, 3))
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(reader.frame, range(0, 120, 3)))
    for i, image in zip(range(0, 120, 3), got):
        np.testing.assert_array_equal(image, expected[i])
    np.testing.assert_array_equal(reader.frame(7), expected[7])
    reader.close()


@needs_av
def test_reader_stops(clips):
    path, _ = clips["a.mkv"]
    reader = FrameReader(path, probe(path), range(24))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        reader.frame(3, stop)
    reader.close()
    with pytest.raises(Stopped):
        reader.frame(0)


# --- truncated and broken clips -------------------------------------------------------------------


@needs_av
@pytest.mark.parametrize("name, says", [("a.mp4", "a packet is cut short after frame"), ("a.mkv", "of the stated 1.00 s")])
def test_truncated_clip(clips, tmp_path, name, says):
    full_path, _ = clips[name]
    full = probe(full_path)
    cut = tmp_path / name
    shutil.copy(full_path, cut)
    truncate(cut, 0.5)
    info = probe(cut)
    assert 5 < info.frames < 24 and says in info.stopped, info
    by_pts = _av_frames(full_path)
    reader = FrameReader(cut, info, range(info.frames))
    for i in range(info.frames):  # every frame before the cut decodes, as in the whole clip
        np.testing.assert_array_equal(reader.frame(i), by_pts[info.pts[i]])
    reader.close()

    # a file cut after it was probed (still being copied): the reader says where it stops
    reader = FrameReader(cut, full, range(24))
    reader.frame(0)
    with pytest.raises(InputError, match=rf"{name}: frame 20: cannot decode \(the clip stops after frame \d+: truncated or corrupt\)"):
        reader.frame(20)
    with pytest.raises(InputError, match="frame 22: cannot decode"):  # at once: no second attempt
        reader.frame(22)
    np.testing.assert_array_equal(reader.frame(3), by_pts[full.pts[3]])  # buffered before the failure
    reader.close()


@needs_av
def test_damaged_clip_fails_once(clips, tmp_path):
    path, expected = clips["a.mp4"]
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(2000)  # frame data zeroed: the H.264 decoder refuses it
    damaged.write_bytes(bytes(data))
    info = probe(damaged)  # demuxing cannot tell
    assert info.frames == 24 and info.stopped is None
    reader = FrameReader(damaged, info, range(24))
    outcomes = []
    for i in range(24):
        try:
            outcomes.append(np.array_equal(reader.frame(i), expected[i]))
        except InputError as exc:
            outcomes.append(str(exc))
    reader.close()
    first = next(i for i, o in enumerate(outcomes) if isinstance(o, str))
    assert 5 < first < 20 and all(o is True for o in outcomes[: first - 2]), outcomes
    assert outcomes[first] == f"{damaged}: frame {first}: cannot decode (the clip stops after frame {first - 1}: truncated or corrupt)"
    assert all(isinstance(o, str) and "the clip stops after" in o for o in outcomes[first:])  # no second attempt


@needs_av
def test_cut_before_any_frame(clips, tmp_path):
    cut = tmp_path / "short.mkv"
    shutil.copy(clips["a.mkv"][0], cut)
    truncate(cut, 0.02)
    with pytest.raises(InputError, match="short.mkv: cannot read as a video"):
        probe(cut)


# --- VideoSink ------------------------------------------------------------------------------------


def _read(path: Path, format: str | None = "rgb24"):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format=format) if format else f.to_ndarray() for f in container.decode(stream)]
        return frames, stream


@needs_av
def test_gray16_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 65536, (37, 51), dtype=np.uint16) for _ in range(6)]
    images[0][0, :2] = (0, 65535)
    sink = VideoSink(tmp_path / "depth.mkv", GRAY16, 6, Fraction(24), Fraction(1, 1000))
    for i in (2, 0, 1, 5, 3, 4):  # out of order: buffered until their turn
        sink.put(i, images[i])
    assert sink.finish() == 6
    frames, stream = _read(tmp_path / "depth.mkv", None)
    assert len(frames) == 6 and stream.codec_context.name == "ffv1"
    for got, want in zip(frames, images):
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, want)
    assert sorted(os.listdir(tmp_path)) == ["depth.mkv"]


@needs_av
@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30000, 1001)])
def test_color_mp4(tmp_path, fps):
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, COLOR, 12, fps, Fraction(1, 90000))
    images = [pattern(i, (48, 64)) for i in range(12)]
    for i in reversed(range(12)):
        sink.put(i, images[i])
    assert sink.finish() == 12
    info = probe(path)
    assert (info.frames, info.width, info.height, info.fps, info.stopped) == (12, 64, 48, fps, None)
    frames, stream = _read(path)
    assert len(frames) == 12 and stream.codec_context.name in ("h264", "mpeg4")
    for got, want in zip(frames, images):
        assert np.abs(got.astype(int) - want).mean() < 6  # crf 18 on a sharp-edged pattern


@needs_av
@pytest.mark.parametrize("name", ["vfr.mkv", "vfr.mp4"])
def test_source_timing_is_kept(tmp_path, name):
    pts = [0, 1000, 2500, 3000, 7000]  # variable frame rate, in 1/1000 s
    sink = VideoSink(tmp_path / name, COLOR, 5, None, Fraction(1, 1000), [p + 500 for p in pts])
    for i in range(5):
        sink.put(i, pattern(i, (16, 16)))
    sink.finish()
    info = probe(tmp_path / name)  # the first frame starts at 0, the gaps between frames are kept
    assert [round(float((p - info.pts[0]) * info.time_base), 3) for p in info.pts] == [p / 1000 for p in pts]


@needs_av
def test_mpeg4_where_libx264_is_missing(tmp_path, monkeypatch):
    import av

    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libx264"})
    sink = VideoSink(tmp_path / "m.mp4", COLOR, 4, Fraction(30000, 1001), Fraction(1, 90000), [0, 3003, 6006, 9009])
    for i in range(4):
        sink.put(i, pattern(i, (32, 48)))
    assert sink.finish() == 4
    frames, stream = _read(tmp_path / "m.mp4")
    assert len(frames) == 4 and stream.codec_context.name == "mpeg4"
    assert np.abs(frames[2].astype(int) - pattern(2, (32, 48))).mean() < 12


@needs_av
def test_skip_and_odd_size(tmp_path):
    path = tmp_path / "odd.mp4"
    sink = VideoSink(path, COLOR, 5, Fraction(10), Fraction(1, 10))
    for i in (0, 2, 4):
        sink.put(i, pattern(i, (33, 45)))
    sink.skip(3)
    sink.skip(1)
    assert sink.finish() == 3
    frames, _ = _read(path)
    assert len(frames) == 3 and frames[0].shape == (34, 46, 3)  # padded to even by one row and column
    want = pattern(2, (33, 45))
    assert np.abs(frames[1][:33, :45].astype(int) - want).mean() < 6
    assert np.abs(frames[1][33, :45].astype(int) - want[32]).mean() < 12  # the last row, repeated


@needs_av
def test_abort_and_incomplete_leave_nothing(tmp_path):
    sink = VideoSink(tmp_path / "a.mp4", COLOR, 3, Fraction(24), Fraction(1, 24))
    sink.put(0, pattern(0, (16, 16)))
    assert len(os.listdir(tmp_path)) == 1 and os.listdir(tmp_path)[0].endswith(".partial")
    sink.abort()
    sink.abort()
    assert os.listdir(tmp_path) == []

    sink = VideoSink(tmp_path / "b.mp4", COLOR, 3, Fraction(24), Fraction(1, 24))
    sink.put(0, pattern(0, (16, 16)))
    sink.put(2, pattern(2, (16, 16)))
    with pytest.raises(DPTError, match="b.mp4: video not written: frame 1 never came"):
        sink.finish()
    assert os.listdir(tmp_path) == []

    sink = VideoSink(tmp_path / "c.mkv", GRAY16, 2, None, Fraction(1, 25))
    sink.skip(0)
    sink.skip(1)
    with pytest.raises(DPTError, match="no frame came"):
        sink.finish()
    assert os.listdir(tmp_path) == []

    sink = VideoSink(tmp_path / "d.mkv", GRAY16, 2, None, Fraction(1, 25))
    sink.put(0, np.zeros((8, 8), np.uint16))
    with pytest.raises(DPTError, match="frame 1 is 9x8, the frames before 8x8"):
        sink.put(1, np.zeros((8, 9), np.uint16))
    sink.abort()
    assert os.listdir(tmp_path) == []

    with pytest.raises(DPTError, match="mov cannot hold 16-bit"):
        VideoSink(tmp_path / "e.mov", GRAY16, 2, None, Fraction(1, 25))
    with pytest.raises(DPTError, match=r"e.avi: a video is written as .mp4, .m4v, .mov or .mkv"):
        VideoSink(tmp_path / "e.avi", COLOR, 2, None, Fraction(1, 25))


# --- without PyAV ---------------------------------------------------------------------------------


def test_works_without_pyav(tmp_path):
    (tmp_path / "x.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(60))
    code = (
        "import sys\n"
        "sys.modules['av'] = None\n"  # as if PyAV were not installed
        "from pathlib import Path\n"
        "from dpt_cli.errors import UsageError\n"
        "from dpt_cli.pipeline import video, video_sink\n"
        "assert not video.available()\n"
        f"assert video.is_video(Path({str(tmp_path / 'x.mkv')!r}))\n"
        "assert 'numpy' not in sys.modules\n"  # importing stays light
        "calls = (lambda: video.require('clip.mp4'), lambda: video.probe(Path('clip.mp4')),\n"
        "         lambda: video_sink.VideoSink(Path('clip.mp4'), 'color', 2, None, 1))\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except UsageError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["clip.mp4: video needs PyAV, an optional extra: pip install 'dpt-cli[video]'"] * 3
