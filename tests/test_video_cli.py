"""`dpt depth clip.mp4`: frames through the batched pipeline, one range per clip, videos out,
truncated clips reported, and the clip's options refused where they would do nothing."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from PIL import Image

from cli import run_cli
from video import decode_all, make_clip

FRAMES, SIZE = 24, (96, 128)


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    make_clip(path, FRAMES, SIZE, fps=24)
    return path


def _frames(folder, suffix=".npy"):
    return sorted(folder.glob(f"[0-9]*{suffix}"))


def _run(*args):
    result = run_cli("depth", *args)
    assert result.code == 0, result.err
    return result


def test_frames_in_order_with_one_range_for_the_clip(tiny, clip, tmp_path):
    out = tmp_path / "out"
    result = _run(clip, "-o", out, "-m", tiny, "-f", "png16,npy")
    npys = _frames(out / "clip")
    assert [p.name for p in npys] == [f"{k:06d}.npy" for k in range(FRAMES)]
    raws = [np.load(p) for p in npys]
    lo, hi = min(float(r.min()) for r in raws), max(float(r.max()) for r in raws)
    for k, raw in enumerate(raws):  # every PNG over the clip's range, by the PNG writer's rule
        want = (np.clip((raw - lo) / (hi - lo), 0, 1) * 65535).astype(np.uint16)
        assert np.array_equal(np.asarray(Image.open(out / "clip" / f"{k:06d}.png")), want)
    doc = json.loads((out / "dpt-run.json").read_text())
    entry = doc["runs"][-1]["videos"][0]
    assert entry["frames"] == entry["done"] == FRAMES and entry["fps"] == "24" and entry["size"] == list(SIZE)
    assert entry["frame_min"] == [float(r.min()) for r in raws] and entry["frame_max"] == [float(r.max()) for r in raws]
    assert [(f["frame"], f["min"], f["max"]) for f in doc["files"]] == [(k, lo, hi) for k in range(FRAMES)]
    assert "range of" in result.err and "(24 frames)" in result.err
    assert not [p for p in out.iterdir() if p.name.startswith(".dpt-range-")]  # the kept maps are gone


def test_range_per_frame_normalises_each_frame_alone(tiny, clip, tmp_path):
    out = tmp_path / "out"
    _run(clip, "-o", out, "-m", tiny, "--range", "per-frame")
    pngs = [np.asarray(Image.open(p)) for p in _frames(out / "clip", ".png")]
    assert len(pngs) == FRAMES and all(p.max() == 65535 for p in pngs)
    records = json.loads((out / "dpt-run.json").read_text())["files"]
    assert len({(r["min"], r["max"]) for r in records}) > 1


def test_each_frame_equals_the_same_decoded_frame_run_as_a_photo(tiny, clip, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, frame in enumerate(decode_all(clip)):
        Image.fromarray(frame).save(photos / f"{k:06d}.png")
    _run(clip, "-o", tmp_path / "v", "-m", tiny, "-f", "npy")
    _run(photos, "-o", tmp_path / "p", "-m", tiny, "-f", "npy")
    for k in range(FRAMES):  # the same batch size (1 on the CPU): bit for bit
        assert np.array_equal(np.load(tmp_path / "v" / "clip" / f"{k:06d}.npy"), np.load(tmp_path / "p" / f"{k:06d}.npy"))


def test_video_out_keeps_frames_and_rate(tiny, tmp_path):
    clip = tmp_path / "c.mkv"
    make_clip(clip, 10, (48, 64), fps=30)
    _run(clip, "-o", tmp_path / "d.mp4", "-m", tiny)
    _run(clip, "-o", tmp_path / "s.mp4", "-m", tiny, "--side-by-side", "--colormap", "gray")
    for name, width in (("d.mp4", 64), ("s.mp4", 128)):
        with av.open(str(tmp_path / name)) as f:
            stream = f.streams.video[0]
            frames = list(f.decode(stream))
            assert len(frames) == 10 and abs(stream.average_rate - 30) < 0.01 and frames[0].width == width
    records = json.loads((tmp_path / "dpt-run.json").read_text())["files"]
    assert [(r["outputs"], r["frames"], r["status"]) for r in records] == [(["d.mp4"], 10, "ok"), (["s.mp4"], 10, "ok")]


def test_mkv_holds_the_exact_16_bit_values_of_the_pngs(tiny, clip, tmp_path):
    _run(clip, "-o", tmp_path / "d.mkv", "-m", tiny)
    _run(clip, "-o", tmp_path / "pngs", "-m", tiny)
    with av.open(str(tmp_path / "d.mkv")) as f:
        frames = [fr.to_ndarray(format="gray16le") for fr in f.decode(video=0)]
    pngs = [np.asarray(Image.open(p)) for p in _frames(tmp_path / "pngs" / "clip", ".png")]
    assert len(frames) == FRAMES and all(np.array_equal(a, b) for a, b in zip(frames, pngs))


def test_a_truncated_clip_gives_the_frames_that_decode_and_says_where_it_stopped(tiny, tmp_path):
    clip = tmp_path / "cut.mkv"
    make_clip(clip, FRAMES, SIZE)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    result = run_cli("depth", clip, "-o", tmp_path / "out", "-m", tiny, "--range", "per-frame")
    assert result.code == 1
    written = _frames(tmp_path / "out" / "cut", ".png")
    assert 0 < len(written) < FRAMES
    assert "truncated or corrupt" in result.err, result.err
    doc = json.loads((tmp_path / "out" / "dpt-run.json").read_text())
    failed = [f for f in doc["files"] if f["status"] == "failed"]
    assert failed and all("truncated or corrupt" in f["error"] for f in failed)  # in the records, not only counted
    assert sum(f["status"] == "ok" for f in doc["files"]) == len(written) == doc["runs"][-1]["videos"][0]["done"]


@pytest.mark.parametrize(("args", "message"), [
    (["--smooth", "5"], "--smooth works along the frames of a video clip"),
    (["--align"], "--align works along the frames of a video clip"),
    (["-o", "{tmp}/x.mp4"], "writes the depth of one video clip"),
])
def test_sequence_options_on_photos_alone_are_usage_errors(tiny, tmp_path, args, message):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_cli("depth", tmp_path / "a.png", "-m", tiny, *args)
    assert result.code == 2 and message in result.err, result.err


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "{tmp}/one.png"], "has 24 frames"),
    (["--sequence", "-o", "{tmp}/o/"], "--sequence makes the photos one sequence"),
    (["--smooth", "3", "--range", "per-frame", "-o", "{tmp}/o/"], "--smooth sets a running range"),
    (["-o", "{tmp}/x.mkv", "--side-by-side"], "side-by-side frames go to -o NAME.mp4"),
])
def test_clip_usage_errors(tiny, clip, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_cli("depth", clip, "-m", tiny, *args)
    assert result.code == 2 and message in result.err, result.err


def test_align_refuses_metric_models(saved_models, clip, tmp_path):
    metric = saved_models("depth_anything_metric")[0]
    result = run_cli("depth", clip, "-m", metric, "-o", tmp_path / "o", "--align")
    assert result.code == 2 and "gives metres" in result.err, result.err


def test_without_pyav_a_clip_is_a_one_line_usage_error(tiny, clip, tmp_path, monkeypatch):
    from dpt_cli.pipeline import video

    monkeypatch.setattr(video, "available", lambda: False)
    result = run_cli("depth", clip, "-m", tiny, "-o", tmp_path / "o")
    assert result.code == 2 and "pip install 'dpt-cli[video]'" in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_kept_maps_that_would_not_fit_on_the_disk_are_refused_first(tiny, clip, tmp_path, monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    result = run_cli("depth", clip, "-m", tiny, "-o", tmp_path / "o")
    assert result.code == 2 and "GB free; give --range per-frame" in result.err, result.err
    assert run_cli("depth", clip, "-m", tiny, "-o", tmp_path / "o", "--range", "per-frame").code == 0  # nothing kept


def test_an_encoder_failure_drops_the_video_and_says_why(tiny, clip, tmp_path, monkeypatch):
    from dpt_cli.pipeline import video_sink

    real, calls = video_sink.VideoSink._frame, []

    def failing(self, image, index):
        calls.append(index)
        if len(calls) == 5:
            raise ValueError("No space left on device (simulated)")
        return real(self, image, index)

    monkeypatch.setattr(video_sink.VideoSink, "_frame", failing)
    result = run_cli("depth", clip, "-m", tiny, "-o", tmp_path / "d.mp4")
    assert result.code == 1 and "cannot write the video (No space left on device (simulated))" in result.err, result.err
    assert "Traceback" not in result.err and not (tmp_path / "d.mp4").exists() and not list(tmp_path.glob(".*partial"))
    records = json.loads((tmp_path / "dpt-run.json").read_text())["files"]
    assert [(r["status"], "simulated" in r["error"]) for r in records] == [("failed", True)]


def test_kept_maps_stay_while_an_input_of_the_clip_failed(tiny, clip, tmp_path):
    out = tmp_path / "out"
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "000003.npy").write_bytes(b"not ours")  # frame 3 cannot be written: it fails
    result = run_cli("depth", clip, "-o", out, "-m", tiny, "-f", "png16,npy")
    assert result.code == 1 and "000003.npy: output exists" in result.err, result.err
    assert len(list(out.glob(".dpt-range-*"))) == 1  # kept for the run that finishes frame 3
    (out / "clip" / "000003.npy").unlink()
    resumed = run_cli("depth", clip, "-o", out, "-m", tiny, "-f", "png16,npy", "--skip-existing")
    assert resumed.code == 0, resumed.err
    assert not list(out.glob(".dpt-range-*"))
    records = json.loads((out / "dpt-run.json").read_text())["files"]
    assert len({(r["min"], r["max"]) for r in records}) == 1  # frame 3 over the clip's one range, from the log
    counts = json.loads((out / "dpt-run.json").read_text())["runs"][-1]["counts"]
    assert (counts["ok"], counts["skipped"]) == (1, 23)


def test_a_clip_on_stdin_is_a_usage_error_naming_the_fix(tiny, clip, tmp_path):
    result = run_cli("depth", "-", "-m", tiny, "-o", tmp_path / "d.png", stdin=clip.read_bytes())
    assert result.code == 2 and "stdin holds a video clip; give the clip as a file" in result.err, result.err


def test_frames_that_cannot_decode_do_not_hold_the_kept_maps(tiny, tmp_path):
    clip = tmp_path / "cut.mp4"
    make_clip(clip, FRAMES, SIZE)
    data = bytearray(clip.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)  # frame data zeroed: demuxing cannot tell
    clip.write_bytes(bytes(data))
    result = run_cli("depth", clip, "-o", tmp_path / "out", "-m", tiny)
    assert result.code == 1 and "cannot decode (the clip stops after frame" in result.err, result.err
    assert 0 < len(_frames(tmp_path / "out" / "cut", ".png")) < FRAMES
    assert not list((tmp_path / "out").glob(".dpt-range-*"))  # nothing left that a resume could use
