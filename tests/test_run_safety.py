"""A run against hostile conditions, through the real CLI: a second run into the same folder,
absurd sizes, NaN and infinity, interrupts at any moment, short writes, odd files. Each case
checks the exit code, the one-line message and exactly what is on disk afterwards."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cli import run_cli, spawn
from dpt_cli.pipeline.lock import LOCK_NAME, OutputLock
from test_cli_depth import photo
from test_hostile_paths import _wait_for_torch, strict_json


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def broken_head(folder, target, value: float):
    """A copy of a model folder whose last head bias is `value` (NaN or infinity everywhere)."""
    shutil.copytree(folder, target)
    state = load_file(target / "model.safetensors")
    state["head.head.4.bias"] = torch.full_like(state["head.head.4.bias"], value)
    save_file(state, target / "model.safetensors", metadata={"format": "pt"})
    return target


def test_a_second_run_into_a_locked_folder_is_refused(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    out = tmp_path / "out"
    with OutputLock(out):
        result = run_cli("depth", src, "-o", out, "-m", tiny)
        assert result.code == 2
        assert f"another dpt run is writing here (pid {os.getpid()}" in result.err, result.err
        assert sorted(os.listdir(out)) == [LOCK_NAME]
    (out / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7, "started": "then", "command": ["dpt"]}))  # stale
    result = run_cli("depth", src, "-o", out, "-m", tiny)
    assert result.code == 0, result.err
    assert sorted(os.listdir(out)) == ["a.png", "dpt-run.json"]  # released and removed on exit


def test_concurrent_processes_cannot_share_a_folder(tiny, tmp_path):
    for i in range(12):
        photo(tmp_path / "in" / f"{i}.png", (200, 300), seed=i)
    out = tmp_path / "out"
    first = spawn("depth", tmp_path / "in", "-o", out, "-m", tiny, "--size", "1024")
    deadline = time.time() + 60
    while not (out / LOCK_NAME).exists() and time.time() < deadline:
        time.sleep(0.02)
    second = run_cli("depth", tmp_path / "in", "-o", out, "-m", tiny)
    assert second.code == 2 and f"(pid {first.pid}" in second.err, second.err
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    manifest = strict_json(out / "dpt-run.json")
    assert manifest["runs"][-1]["counts"]["ok"] == 12 and manifest["runs"][-1]["settings"]["network_size"] == [1024, 1024]


def test_sizes_are_limited_before_anything_is_allocated(tmp_path):
    src = photo(tmp_path / "a.png")
    for size in ("99999", "384x5000"):
        result = run_cli("depth", src, "-o", tmp_path / "o.png", "--size", size, "-m", tmp_path / "no-model")
        assert result.code == 2 and "at most 4096" in result.err, result.err
    result = run_cli("depth", src, "-o", tmp_path / "o.png", "--batch-size", "100000", "-m", tmp_path / "no-model")
    assert result.code == 2 and "--batch-size" in result.err


def test_an_elongated_photo_that_needs_a_huge_input_fails_alone(tiny, tmp_path):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (12000, 400)).save(tmp_path / "in" / "panorama.png")
    photo(tmp_path / "in" / "ok.png")
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", tiny)
    assert result.code == 1
    assert "panorama.png: its 400x12000 shape needs a 384x11520 network input, over the 4096 limit" in result.err
    assert sorted(os.listdir(tmp_path / "out")) == ["dpt-run.json", "ok.png"]


def test_nan_inputs_and_non_finite_outputs_are_per_file_errors(saved_models, tmp_path):
    folder, _ = saved_models("readout_add")
    grey = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    grey[3, 4] = np.nan
    (tmp_path / "in").mkdir()
    Image.fromarray(grey).save(tmp_path / "in" / "nan.tiff")
    photo(tmp_path / "in" / "fine.png")
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", folder, "-f", "npy")
    assert result.code == 1 and "nan.tiff: 1 pixel value(s) are NaN or infinite" in result.err
    assert sorted(os.listdir(tmp_path / "out")) == ["dpt-run.json", "fine.npy"]

    for value, name in ((float("nan"), "nan"), (float("inf"), "inf")):
        model = broken_head(folder, tmp_path / f"model-{name}", value)
        result = run_cli("depth", tmp_path / "in" / "fine.png", "-o", tmp_path / name, "-m", model, "-f", "npy", "-f", "png16")
        assert result.code == 1 and "the model's output has" in result.err and "nothing written" in result.err, result.err
        manifest = strict_json(tmp_path / name / "dpt-run.json")  # strict JSON: no NaN/Infinity tokens
        assert manifest["files"][0]["status"] == "failed" and "min" not in manifest["files"][0]
        assert os.listdir(tmp_path / name) == ["dpt-run.json"]
    result = run_cli("depth", tmp_path / "in" / "fine.png", "-o", tmp_path / "r.png", "-m", folder, "--range=-inf:inf")
    assert result.code == 2 and "must be finite" in result.err


def test_two_interrupts_leave_a_manifest_that_matches_the_disk(tiny, tmp_path):
    for i in range(40):
        photo(tmp_path / "in" / f"{i:02d}.png", (300, 400), seed=i)
    out = tmp_path / "out"
    proc = spawn("depth", tmp_path / "in", "-o", out, "-m", tiny, "-f", "npy", "-f", "png16", "--workers", "2")
    deadline = time.time() + 120
    while len(list(out.glob("*.npy"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    records = strict_json(out / "dpt-run.json")["files"]
    done = [r for r in records if r["status"] == "ok"]
    assert done and len(done) < 40 and all(r["status"] in ("ok", "interrupted") for r in records)
    for r in records:
        present = [os.path.exists(out / p) for p in r["outputs"]]
        assert all(present) if r["status"] == "ok" else not any(present), r
    assert not list(out.glob(".*"))  # no temporary files left either


def test_a_short_write_names_the_output_and_the_reason(tiny, tmp_path):
    src = photo(tmp_path / "a.png", (200, 300))

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # the .npy needs 240,080 bytes

    proc = subprocess.run([sys.executable, "-m", "dpt_cli", "depth", str(src), "-o", str(tmp_path / "d.npy"), "-m", tiny],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    assert proc.returncode == 1
    assert f"dpt: {tmp_path}/d.npy: cannot write (File too large)" in proc.stderr, proc.stderr
    assert "requested" not in proc.stderr and not (tmp_path / "d.npy").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_problems_are_found_before_the_model_loads(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # would fail to load: proves the order of checks
    src = photo(tmp_path / "a.png")
    (tmp_path / "file").write_text("in the way")
    result = run_cli("depth", src, "-o", tmp_path / "file" / "out", "-m", broken)
    assert result.code == 2 and "cannot create the output folder (a file is in the way)" in result.err, result.err
    result = run_cli("depth", src, "-o", tmp_path / "out", "-m", broken)
    assert result.code == 2 and "field 'hidden_size' is missing" in result.err  # a model error is a usage error


def test_sigterm_before_the_model_loads_exits_130(tiny, tmp_path):
    proc = spawn("depth", "-", "-o", tmp_path / "out", "-m", tiny, stdin=subprocess.PIPE)
    _wait_for_torch(proc)
    time.sleep(0.5)  # reading the path list from a stdin that never ends
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "dpt: interrupted" in err and "Traceback" not in err, err


def test_more_classes_than_label_maps_hold_is_refused(saved_models, tmp_path):
    folder, _ = saved_models("seg")
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    config = json.loads((model / "config.json").read_text())
    config["id2label"] = {str(i): f"c{i}" for i in range(70000)}
    config["label2id"] = {f"c{i}": i for i in range(70000)}
    (model / "config.json").write_text(json.dumps(config))
    result = run_cli("segment", photo(tmp_path / "a.png"), "-o", tmp_path / "l.png", "-m", model)
    assert result.code == 2 and "16-bit" in result.err, result.err


def test_animated_input_uses_the_first_frame_and_says_so(tiny, tmp_path):
    frames = [Image.fromarray(np.full((30, 40, 3), v, np.uint8)) for v in (10, 120, 240)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = run_cli("depth", tmp_path / "anim.gif", "-o", tmp_path / "d.npy", "-m", tiny)
    assert result.code == 0, result.err
    assert strict_json(tmp_path / "dpt-run.json")["files"][0]["frames"] == 3


def test_outputs_written_into_the_input_folder_are_never_inputs(tiny, tmp_path, monkeypatch):
    photo(tmp_path / "photos" / "a.jpg")
    monkeypatch.chdir(tmp_path)
    first = run_cli("depth", "photos", "-o", "photos", "-m", tiny)  # relative names...
    assert first.code == 0, first.err
    monkeypatch.chdir(tmp_path / "photos")  # ...read back from elsewhere
    again = run_cli("depth", tmp_path / "photos", "-o", tmp_path / "photos", "-m", tiny, "--skip-existing")
    assert again.code == 0, again.err
    records = strict_json(tmp_path / "photos" / "dpt-run.json")["files"]
    assert [(os.path.basename(r["input"]), r["status"], r["last_attempt"]["status"]) for r in records] == [("a.jpg", "ok", "skipped")]
    assert sorted(os.listdir(tmp_path / "photos")) == ["a.jpg", "a.png", "dpt-run.json"]


@pytest.fixture
def small_mount(tmp_path):
    """mount(folder, options) -> a fresh tmpfs there (root only; the test is skipped elsewhere)."""
    mounted = []

    def mount(folder, options: str):
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_read_only_output_folder_is_refused_before_the_model_loads(tmp_path, small_mount):
    out = small_mount(tmp_path / "ro", "ro,size=1m")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    result = run_cli("depth", photo(tmp_path / "a.png"), "-o", out, "-m", broken)
    assert result.code == 2 and f"-o {out}: cannot write in the output folder (read-only file system)" in result.err, result.err


def test_a_full_disk_names_the_output_and_the_reason(tiny, tmp_path, small_mount):
    out = small_mount(tmp_path / "full", "size=64k")
    result = run_cli("depth", photo(tmp_path / "a.png", (200, 300)), "-o", out / "d.npy", "-m", tiny)
    assert result.code == 1
    assert f"dpt: {out}/d.npy: cannot write (No space left on device)" in result.err, result.err
    assert os.listdir(out) == ["dpt-run.json"]
