"""A killed clip run resumes with --skip-existing: exactly the missing frames, over the same range."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from PIL import Image

from cli import run_cli, spawn
from video import make_clip, pattern

FRAMES, SIZE = 150, (96, 128)


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def _wait(condition, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"run ended or stalled first: {proc.poll()}")


def _inputs(kind, tmp_path):
    if kind == "clip":
        make_clip(tmp_path / "clip.mkv", FRAMES, SIZE)
        return [tmp_path / "clip.mkv"], "clip/"
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(FRAMES):
        Image.fromarray(pattern(k, SIZE)).save(folder / f"{k:06d}.png")
    return [folder, "--sequence"], ""


def _logged(out) -> int:
    logs = list(out.glob(".dpt-range-*/ranges.log"))
    return len(logs[0].read_text().splitlines()) if logs else 0


@pytest.mark.parametrize("kind", ["clip", "sequence"])
def test_killed_one_range_run_resumes_from_its_kept_maps(tiny, tmp_path, kind):
    inputs, sub = _inputs(kind, tmp_path)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    args = ("depth", *inputs, "-m", tiny, "-f", "png16,npy", "--workers", "1")
    proc = spawn(*args, "-o", out)
    _wait(lambda: _logged(out) >= 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    kept = _logged(out)
    assert 10 <= kept < FRAMES and not list(out.glob(f"{sub}*.png"))  # the PNGs wait for the range
    resumed = run_cli(*args, "-o", out, "--skip-existing")
    assert resumed.code == 0, resumed.err
    reused = int(resumed.err.split(" input(s) reuse the depth maps")[0].rsplit(" ", 1)[-1])
    assert reused >= kept - 1  # a map whose log line the kill cut is run again
    assert run_cli(*args, "-o", fresh).code == 0
    for k in range(FRAMES):  # the same files as a run never interrupted: same range, same values
        for suffix in (".png", ".npy"):
            a, b = out / f"{sub}{k:06d}{suffix}", fresh / f"{sub}{k:06d}{suffix}"
            load = np.load if suffix == ".npy" else lambda p: np.asarray(Image.open(p))
            assert np.array_equal(load(a), load(b)), a
    assert not list(out.glob(".dpt-range-*"))


def test_killed_per_frame_run_finishes_exactly_the_missing_frames(tiny, tmp_path):
    inputs, sub = _inputs("clip", tmp_path)
    out = tmp_path / "out"
    args = ("depth", *inputs, "-o", out, "-m", tiny, "-f", "png16,npy", "--range", "per-frame", "--workers", "1")
    proc = spawn(*args)
    _wait(lambda: len(list(out.glob(f"{sub}*.png"))) >= 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    done = [k for k in range(FRAMES) if (out / f"{sub}{k:06d}.png").exists() and (out / f"{sub}{k:06d}.npy").exists()]
    assert 5 <= len(done) < FRAMES
    stamps = {k: (out / f"{sub}{k:06d}.png").stat().st_mtime_ns for k in done}
    resumed = run_cli(*args, "--skip-existing")
    assert resumed.code == 0, resumed.err
    counts = json.loads((out / "dpt-run.json").read_text())["runs"][-1]["counts"]
    assert counts == {"ok": FRAMES - len(done), "skipped": len(done), "failed": 0, "interrupted": 0}
    assert all((out / f"{sub}{k:06d}.png").stat().st_mtime_ns == stamps[k] for k in done)
    assert len(list(out.glob(f"{sub}*.png"))) == FRAMES
