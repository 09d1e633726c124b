"""`dpt convert` never destroys what it did not write, and leaves no hidden folders behind.

Refusals happen before the source is read, so a few bytes of nonsense stand in for the checkpoint:
exit 2 (not 1, "not a readable checkpoint") shows that it was never opened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from cli import run_cli, spawn
from dpt_cli.weights import convert_target
from dpt_cli.interrupts import deferred
from dpt_cli.weights.convert_target import CONVERTED_FILES, remove_stale

BOGUS = b"hello, I am not a checkpoint\n"
NOTES = "my notes\n"


def snapshot(root: Path) -> dict[str, object]:
    """Everything under `root`: file bytes, symlink targets, folders (hidden ones included)."""
    tree: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                tree[key] = ("link", os.readlink(path))
            elif path.is_dir():
                tree[key] = "dir"
            else:
                tree[key] = path.read_bytes()
    return tree


def dpt_folder(path: Path, marker: str = "old") -> Path:
    """A folder as `dpt convert` leaves it, with recognisable contents."""
    path.mkdir(parents=True)
    for name in CONVERTED_FILES:
        (path / name).write_text(marker)
    signature = {"source": "x.pt", "source_sha256": marker, "variant": "relative", "dtype": "float32", "dpt_version": "0"}
    (path / "conversion.json").write_text(json.dumps(signature))
    return path


def dead_pid() -> int:
    """The PID of a process that has finished (and been reaped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(done.pid, 0)
    return done.pid


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    """tmp_path/models holding a (bogus) ck.pt and an unrelated notes.txt; cwd is tmp_path."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "ck.pt").write_bytes(BOGUS)
    (folder / "notes.txt").write_text(NOTES)
    dpt_folder(tmp_path / "converted")
    other = dpt_folder(tmp_path / "mixed")
    (other / "keep.txt").write_text("mine")
    hf = tmp_path / "hf"  # a downloaded transformers folder: the same names, but no conversion.json
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "plain.txt").write_text("plain")
    (tmp_path / "link").symlink_to("mixed")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    return folder


REFUSED = [
    # (cwd under tmp_path, -o, --force, what the message says)
    (".", "models", True, "models: holds the source file models/ck.pt"),
    (".", "models", False, "models: holds the source file models/ck.pt"),
    (".", "models/", True, "holds the source file"),
    (".", "models/sub/..", True, "holds the source file"),
    (".", "models/ck.pt", True, "models/ck.pt: is the source file itself"),
    (".", "models/ck.pt", False, "models/ck.pt: is the source file itself"),
    ("models", ".", True, ".: is the current folder"),
    ("models", "../models", True, "../models: is the current folder"),
    ("empty", ".", False, ".: is the current folder"),  # empty, but never the current folder
    ("models", "..", True, "..: is a folder that holds the current folder"),
    (".", "/", True, "/: is the root folder"),
    (".", "/", False, "/: is the root folder"),
    (".", "plain.txt", True, "plain.txt: exists and is not a folder"),
    (".", "models/ck.pt/out", False, "ck.pt is not a folder"),
    (".", "link", True, "link: is a symbolic link"),
    (".", "link", False, "link: is a symbolic link"),
    (".", "mixed", True, "mixed: holds files dpt convert does not write (keep.txt)"),
    (".", "mixed", False, "mixed: exists and is not empty"),
    (".", "converted", False, "converted: exists and is not empty"),
    (".", "hf", True, "hf: was not written by dpt convert (it has no conversion.json)"),
]


@pytest.mark.parametrize("cwd, out, force, message", REFUSED, ids=[f"{c}:{o}:{'force' * f}" for c, o, f, _ in REFUSED])
def test_refused_destination_is_a_usage_error_and_touches_nothing(models, tmp_path, monkeypatch, cwd, out, force, message):
    monkeypatch.chdir(tmp_path / cwd)
    src = os.path.relpath(models / "ck.pt")
    before = snapshot(tmp_path)
    done = run_cli("convert", src, "-o", out, *(["--force"] if force else []))
    assert done.code == 2, done.err
    assert done.err.startswith("dpt: error: ") and done.err.count("\n") == 1, done.err
    assert message in done.err and "choose a new folder" in done.err, done.err
    assert "Traceback" not in done.err
    if out == "/":
        assert done.err == "dpt: error: /: is the root folder; choose a new folder\n"
    assert snapshot(tmp_path) == before
    assert (models / "ck.pt").read_bytes() == BOGUS and (models / "notes.txt").read_text() == NOTES


@pytest.mark.parametrize("out", ["empty", "fresh/deeper"])
def test_bad_source_still_exits_1_and_leaves_nothing(models, tmp_path, out):
    before = snapshot(tmp_path)
    done = run_cli("convert", "models/ck.pt", "-o", out)
    assert done.code == 1, done.err
    assert "not a readable PyTorch checkpoint" in done.err and done.err.count("\n") == 1
    assert snapshot(tmp_path) == before  # no folder made, no hidden sibling left


def test_force_replaces_a_folder_dpt_wrote_next_to_the_source(originals, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    src = models / "ck.pt"
    os.link(originals("dpt_hybrid-midas"), src)
    (models / "notes.txt").write_text(NOTES)
    out = dpt_folder(models / "dpt-hybrid")
    monkeypatch.chdir(tmp_path)
    source = src.stat()

    done = run_cli("convert", "models/ck.pt", "-o", "models/dpt-hybrid", "--force", "--dtype", "float16", "-q")
    assert done.code == 0, done.err
    assert sorted(p.name for p in models.iterdir()) == ["ck.pt", "dpt-hybrid", "notes.txt"]  # no hidden leftovers
    assert sorted(p.name for p in out.iterdir()) == sorted(CONVERTED_FILES)
    assert json.loads((out / "conversion.json").read_text())["dtype"] == "float16"
    assert load_file(out / "model.safetensors")["dpt.layernorm.weight"].dtype.itemsize == 2
    after = src.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (source.st_ino, source.st_size, source.st_mtime_ns)
    assert (models / "notes.txt").read_text() == NOTES


def test_sigterm_removes_the_unfinished_folder(originals, tmp_path):
    out = tmp_path / "out"
    proc = spawn("convert", originals("dpt_large-midas"), "-o", out)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert [p.name for p in tmp_path.iterdir()] == [f".out.partial-{proc.pid}"]
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert time.monotonic() - sent < 10  # the hashing thread does not hold the exit up
    assert list(tmp_path.iterdir()) == []


def test_next_run_removes_what_killed_runs_left(originals, tmp_path):
    dead, live = dead_pid(), os.getpid()
    stale = [tmp_path / f".out.partial-{dead}", dpt_folder(tmp_path / f".out.old-{dead}")]
    stale[0].mkdir()
    (stale[0] / "model.safetensors").write_bytes(b"half")
    kept = [tmp_path / f".out.partial-{live}", tmp_path / f".other.partial-{dead}"]
    for path in kept:
        path.mkdir()

    done = subprocess.run(
        [sys.executable, "-m", "dpt_cli", "convert", str(originals("dpt_hybrid-midas")), "-o", str(tmp_path / "out"), "-q"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", *(p.name for p in kept)])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(CONVERTED_FILES)


def test_stale_cleanup_spares_other_users_processes_and_their_files(tmp_path, monkeypatch):
    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")  # alive, someone else's

    other = tmp_path / ".out.partial-4242"
    other.mkdir()
    monkeypatch.setattr(convert_target.os, "kill", kill)
    assert remove_stale(tmp_path / "out") == [] and other.is_dir()
    monkeypatch.undo()

    old = dpt_folder(tmp_path / f".out.old-{dead_pid()}")
    (old / "keep.txt").write_text("put here meanwhile")  # an .old folder loses only convert's files
    remove_stale(tmp_path / "out")
    assert [p.name for p in old.iterdir()] == ["keep.txt"]


def test_interrupts_wait_for_the_end_of_a_critical_step():
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, without raising
            reached = True
    assert reached
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stale_partial_holding_the_source_keeps_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / f".out.partial-{dead_pid()}"
    stale.mkdir()
    (stale / "ck.pt").write_bytes(BOGUS)
    (stale / "model.safetensors").write_bytes(b"half")
    result = run_cli("convert", stale / "ck.pt", "-o", "out")
    assert result.code == 1 and "not a readable" in result.err  # the source was read: still there
    assert (stale / "ck.pt").read_bytes() == BOGUS and not (stale / "model.safetensors").exists()
