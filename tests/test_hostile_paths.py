"""Hostile paths through the real CLI: `..`, symbolic links and loops, FIFOs, non-UTF-8 and
control characters in names, names at the length limit. Nothing is written outside -o, no input
is replaced, nothing hangs, and every problem is one line naming its path."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cli import run_cli, spawn
from test_cli_depth import photo


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def strict_json(path) -> dict:
    """Parse as strict parsers do: NaN/Infinity or invalid UTF-8 are errors."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(path.read_bytes().decode("utf-8"), parse_constant=refuse)


def snapshot(root) -> dict[str, bytes]:
    """Every file under `root` (not following links) with its content."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with open(path, "rb") as f:
                    found[os.path.relpath(path, root)] = f.read()
    return found


def test_dotdot_input_cannot_write_beside_itself(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "photos" / "a.jpg")
    photo(tmp_path / "photos" / "b.jpg", seed=1)
    (tmp_path / "photos" / "b.png").write_text("precious")
    result = run_cli("depth", "photos/a.jpg", "photos/../photos/b.jpg", "-o", "out", "-m", tiny)
    assert result.code == 0, result.err
    assert (tmp_path / "photos" / "b.png").read_text() == "precious"
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png", "dpt-run.json"]
    assert sorted(os.listdir(tmp_path / "photos")) == ["a.jpg", "b.jpg", "b.png"]


def test_parent_relative_inputs_make_no_stray_folders(tiny, tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    photo(proj / "photos" / "a.jpg")
    photo(proj / "photos" / "b.jpg", seed=1)
    monkeypatch.chdir(proj)
    result = run_cli("depth", "photos/a.jpg", "../proj/photos/b.jpg", "-o", "out", "-m", tiny)
    assert result.code == 0, result.err
    assert sorted(os.listdir(proj)) == ["out", "photos"] and sorted(os.listdir(tmp_path)) == ["proj"]
    assert sorted(os.listdir(proj / "out")) == ["a.png", "b.png", "dpt-run.json"]


def test_link_inside_output_leading_out_is_refused(tiny, tmp_path):
    photo(tmp_path / "in" / "sub" / "a.jpg")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "sub")
    result = run_cli("depth", tmp_path / "in", "-r", "-o", tmp_path / "out", "-m", tiny)
    assert result.code == 2 and "would be written outside -o" in result.err, result.err
    assert os.listdir(tmp_path / "elsewhere") == []


def test_non_utf8_names_from_a_folder_and_from_stdin(tiny, tmp_path):
    folder = tmp_path / "in"
    name = os.fsdecode(b"caf\xe9 \x1b[31m.jpg")  # Latin-1 byte and an escape sequence
    photo(folder / name)
    out = tmp_path / "out"
    proc = spawn("depth", folder, "-o", out, "-m", tiny, "-f", "npy")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert os.listdir(os.fsencode(out)) and b"caf\xe9 \x1b[31m.npy" in os.listdir(os.fsencode(out))
    assert "caf\\xe9 \\x1b[31m.jpg" in err and "\x1b" not in err
    record = strict_json(out / "dpt-run.json")["files"][0]
    assert record["input"].endswith("caf\\xe9 \\x1b[31m.jpg")
    assert base64.b64decode(record["input_b64"]) == os.fsencode(os.path.relpath(folder / name, out))
    assert base64.b64decode(record["outputs_b64"][0]) == b"caf\xe9 \x1b[31m.npy"

    listing = os.fsencode(folder / name) + b"\n"
    proc = subprocess.run([sys.executable, "-m", "dpt_cli", "depth", "-", "-o", str(tmp_path / "o2"), "-m", tiny],
                          input=listing, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b"caf\xe9 \x1b[31m.png" in os.listdir(os.fsencode(tmp_path / "o2"))


def test_newline_in_a_bad_name_stays_one_line(tiny, tmp_path):
    bad = tmp_path / "in" / "two\nlines.jpg"
    bad.parent.mkdir()
    bad.write_text("not a picture")
    result = run_cli("depth", bad.parent, "-o", tmp_path / "out", "-m", tiny)
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if line.startswith("dpt:")]
    assert lines == [f"dpt: {tmp_path}/in/two\\nlines.jpg: not an image Pillow can read"]


def test_symlink_loops_are_one_line_each(tiny, tmp_path):
    folder = tmp_path / "in"
    photo(folder / "sub" / "x.jpg")
    os.symlink("me.jpg", folder / "me.jpg")  # a link to itself
    os.symlink("..", folder / "sub" / "up")  # a folder loop
    os.symlink("sub", folder / "alias")  # the same tree under a second name
    result = run_cli("depth", folder / "me.jpg", "-o", tmp_path / "one.png", "-m", tiny)
    assert result.code == 1 and f"dpt: {folder}/me.jpg: symbolic link loop" in result.err, result.err
    assert "Traceback" not in result.err

    plain = run_cli("depth", folder, "-r", "-o", tmp_path / "plain", "-m", tiny)
    assert plain.code == 1, plain.err  # me.jpg failed; the tree went on
    assert sorted(snapshot(tmp_path / "plain")) == ["dpt-run.json", "sub/x.png"]
    assert "alias: symbolic link to a directory: not followed" in plain.err

    followed = run_cli("depth", folder, "-r", "--follow-symlinks", "-o", tmp_path / "followed", "-m", tiny)
    assert followed.code == 1, followed.err
    assert sorted(snapshot(tmp_path / "followed")) == ["dpt-run.json", "sub/x.png"]  # once, under its own name
    assert "alias: already scanned as" in followed.err and "up: symbolic link loop" in followed.err
    statuses = {r["input"].rsplit("/", 1)[-1]: r["status"] for r in strict_json(tmp_path / "followed" / "dpt-run.json")["files"]}
    assert statuses == {"me.jpg": "failed", "alias": "skipped", "up": "skipped", "x.jpg": "ok"}


def test_fifos_are_never_opened(tiny, tmp_path):
    folder = tmp_path / "in"
    photo(folder / "a.jpg")
    os.mkfifo(folder / "f.jpg")  # no writer: an ordinary open() would wait forever
    os.mkfifo(folder / "pipe")
    proc = spawn("depth", folder, "-o", tmp_path / "out", "-m", tiny)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err  # skipped with a reason is not a failure
    assert "f.jpg: a FIFO, not a regular file: skipped" in err and "pipe: a FIFO" in err
    proc = spawn("depth", folder / "f.jpg", "-o", tmp_path / "f.png", "-m", tiny)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "f.jpg: a FIFO, not a regular file: only regular files are read" in err


def test_image_bytes_through_dev_stdin(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    proc = subprocess.run([sys.executable, "-m", "dpt_cli", "depth", "/dev/stdin", "-o", str(tmp_path / "d.npy"), "-m", tiny],
                          input=src.read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d.npy").exists()


def _wait_for_torch(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the child has imported torch: main() has installed its signal handlers by then."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(f"/proc/{proc.pid}/maps") as f:
            if "libtorch" in f.read():
                return
        time.sleep(0.05)
    raise AssertionError("the child never imported torch")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stream_that_never_ends_stops_at_the_first_signal(tiny, tmp_path, sig):
    proc = spawn("depth", "/dev/stdin", "-o", tmp_path / "d.png", "-m", tiny, stdin=subprocess.PIPE)
    _wait_for_torch(proc)
    time.sleep(1.0)  # model loaded, the reader waiting on the silent pipe
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("length", [238, 246, 255])
def test_names_at_the_limit_are_written(tiny, tmp_path, length):
    stem = "n" * (length - len(".png"))
    src = photo(tmp_path / "in" / (stem + ".jpg"))
    result = run_cli("depth", src.parent, "-o", tmp_path / "out", "-m", tiny)
    assert result.code == 0, result.err
    assert sorted(os.listdir(tmp_path / "out")) == sorted([stem + ".png", "dpt-run.json"])


def test_a_name_over_the_limit_fails_naming_the_final_path(tiny, tmp_path):
    stem = "n" * 245
    photo(tmp_path / "in" / (stem + ".jpg"))
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-f", "side-by-side", "-m", tiny)
    assert result.code == 1
    assert f"dpt: {tmp_path}/out/{stem}.side-by-side.png: output name too long (262 bytes" in result.err, result.err
    assert os.listdir(tmp_path / "out") == ["dpt-run.json"]  # and no temporary file left


@pytest.mark.parametrize("where", ["output folder", "output file", "model", "info", "convert source"])
def test_names_too_long_anywhere_on_the_command_line_are_one_line(tiny, tmp_path, where):
    long = str(tmp_path / ("x" * 300))
    src = str(photo(tmp_path / "a.png"))
    args = {
        "output folder": ("depth", src, "-o", long, "-m", tiny),
        "output file": ("depth", src, "-o", long + ".png", "-m", tiny),
        "model": ("depth", src, "-o", tmp_path / "o.png", "-m", long),
        "info": ("info", long),
        "convert source": ("convert", long + ".pt", "-o", tmp_path / "converted"),
    }[where]
    result = run_cli(*args)
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "longer than 255 bytes" in result.err or "file name too long" in result.err


def test_empty_paths_are_refused_not_taken_for_the_current_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "a.png")
    result = run_cli("depth", "a.png", "-o", "", "-m", tiny)
    assert result.code == 2 and "-o: an empty path" in result.err
    result = run_cli("depth", "", "-o", "out", "-m", tiny)
    assert result.code == 1 and "dpt: '': an empty path names no file" in result.err
    assert sorted(os.listdir(tmp_path)) == ["a.png", "out"] and os.listdir(tmp_path / "out") == ["dpt-run.json"]
