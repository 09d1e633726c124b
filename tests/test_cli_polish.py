"""The command line a careful user expects (issue 9): -o forms, errors before the model loads,
no option silently ignored, stdin image bytes and NUL lists, help, exit codes, the summary."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli import run_cli

NO_MODEL = "/nonexistent/model-folder"  # errors must come before the model is even looked at


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def photo(path, size=(30, 40), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


# --- 2. what -o names ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["d.bmp", "d.gif", "d.txt", "v1.2"])
def test_an_extension_dpt_cannot_write_is_a_usage_error(tmp_path, name):
    result = run_cli("depth", photo(tmp_path / "a.png"), "-o", tmp_path / name, "-m", NO_MODEL)
    assert result.code == 2, result.err
    assert "dpt does not write" in result.err and ".png, .npy, .pfm" in result.err and f"{name}/" in result.err
    assert not (tmp_path / name).exists()


def test_trailing_slash_no_extension_and_existing_folders_are_folders(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    (tmp_path / "have.png").mkdir()
    for name in ("new.png/", "plain", "have.png"):
        result = run_cli("depth", src, "-o", f"{tmp_path}/{name}", "-m", tiny)
        assert result.code == 0, result.err
        assert (tmp_path / name.rstrip("/") / "a.png").is_file()


def test_stdout_gets_exactly_the_file(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    assert run_cli("depth", src, "-o", tmp_path / "d.png", "-m", tiny).code == 0
    piped = run_cli("depth", src, "-o", "-", "-m", tiny)
    assert piped.code == 0, piped.err
    assert piped.out_bytes == (tmp_path / "d.png").read_bytes()
    assert "-> stdout" in piped.err
    raw = run_cli("depth", src, "-o", "-", "-f", "npy", "-m", tiny)
    assert np.load(io.BytesIO(raw.out_bytes)).shape == (30, 40)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "d.png", "dpt-run.json"]  # nothing else written


def test_stdout_takes_one_output(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    for extra in (["-f", "png16,color"], ["--side-by-side"]):
        result = run_cli("depth", src, "-o", "-", "-m", NO_MODEL, *extra)
        assert result.code == 2 and "-o - writes one output" in result.err, result.err
    result = run_cli("depth", src, photo(tmp_path / "b.png"), "-o", "-", "-m", tiny)
    assert result.code == 2 and result.err == "dpt: error: -o - names one file but there are 2 inputs; give a directory\n"


def test_stdout_leaves_no_temporary_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    assert run_cli("depth", photo(tmp_path / "a.png"), "-o", "-", "-m", tiny).code == 0
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("stream, args, message", [
    ("stdout", ["{src}", "-o", "-"], "stdout is closed"),
    ("stdin", ["-", "-o", "{out}"], "stdin is closed"),
])
def test_closed_stdout_or_stdin_is_one_line(tmp_path, stream, args, message):
    names = {"src": str(photo(tmp_path / "a.png")), "out": str(tmp_path / "o")}
    argv = ["dpt", "depth", *(a.format(**names) for a in args), "-m", NO_MODEL]
    fd = 1 if stream == "stdout" else 0  # closed as `dpt ... >&-` or `<&-` leaves it: Python sets None
    code = f"import os, sys; os.close({fd}); sys.{stream} = None; sys.argv = {argv!r}; from dpt_cli.cli import run; run()"
    proc = subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_stdout_on_a_terminal_is_refused(tmp_path):
    import pty

    src = photo(tmp_path / "a.png")
    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "dpt_cli", "depth", str(src), "-o", "-", "-m", NO_MODEL],
                          stdout=follower, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 2 and "stdout, which is a terminal" in proc.stderr, proc.stderr


def test_no_output_option_writes_to_dpt_out(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "in" / "a.png")
    result = run_cli("depth", "in", "-m", tiny)
    assert result.code == 0, result.err
    assert "writing to dpt-out/" in result.err.splitlines()[0]
    assert (tmp_path / "dpt-out" / "a.png").is_file()


# --- 3, 5. errors before the model loads --------------------------------------------------------

def test_a_misspelt_input_or_empty_glob_is_named(tmp_path):
    photo(tmp_path / "a.png")
    result = run_cli("depth", tmp_path / "nothere.jpg", "-o", tmp_path / "x.png", "-m", NO_MODEL)
    assert result.code == 2 and result.err == f"dpt: error: {tmp_path}/nothere.jpg: no such file or directory\n"
    result = run_cli("depth", f"{tmp_path}/*.jpg", tmp_path / "a.png", "-o", tmp_path / "out", "-m", NO_MODEL)
    assert result.code == 2 and "*.jpg: no file matches this pattern" in result.err, result.err
    assert not (tmp_path / "out").exists()


def test_all_outputs_existing_is_a_usage_error_before_loading(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    assert run_cli("depth", src, "-o", tmp_path / "out", "-m", tiny).code == 0
    result = run_cli("depth", src, "-o", tmp_path / "out", "-m", NO_MODEL)
    assert result.code == 2 and "a.png: already exists; --overwrite replaces it, --skip-existing keeps it" in result.err
    skipped = run_cli("depth", src, "-o", tmp_path / "out", "-m", tiny, "--skip-existing")
    assert skipped.code == 0 and "skipped 1" in skipped.err, skipped.err
    assert "model " not in skipped.err  # nothing to do: the model is not loaded


def test_unwritable_output_folder_is_found_before_loading(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    (tmp_path / "file").write_text("in the way")
    unloadable = tmp_path / "no-weights"  # a load would fail: the folder error must come first
    unloadable.mkdir()
    (unloadable / "config.json").write_text(open(os.path.join(tiny, "config.json")).read())
    result = run_cli("depth", src, "-o", tmp_path / "file" / "out", "-m", unloadable)
    assert result.code == 2 and "cannot create the output folder" in result.err, result.err


# --- 6. options that would be ignored -----------------------------------------------------------

@pytest.mark.parametrize("out, extra, message", [
    ("a.png", ["--colormap", "inferno"], "--colormap colours depth pictures, but this run writes png16"),
    ("d.npy", ["--bits", "8"], "--bits sets the depth PNG's bit depth, but this run writes npy"),
    ("x.npy", ["-f", "color"], "writes npy (its extension says so), not color"),
    ("out/", ["-f", "png16", "--bits", "8"], "--bits 8 contradicts -f png16: use -f png8"),
    ("out/", ["--skip-existing", "--overwrite"], "give one of the two"),
    ("d.npy", ["--range", "0:1"], "--range normalises depth PNGs, pictures and videos"),
    ("d.npy", ["--png-level", "5"], "--png-level sets the compression of 16/8-bit depth PNGs"),
    ("out/", ["--follow-symlinks"], "add -r"),
    ("out/", ["-0"], "give - as an input"),
    ("d.ply", [], "-f ply needs the camera"),
    ("d.png", ["--fov", "60"], "add -f ply"),
    ("d.ply", ["--fov", "60", "--fx", "100"], "not both"),
    ("d.png", ["--size", "3000"], "the limit is 4,194,304"),
])
def test_contradicting_options_are_usage_errors(tmp_path, out, extra, message):
    result = run_cli("depth", photo(tmp_path / "a.png"), "-o", f"{tmp_path}/{out}", "-m", NO_MODEL, *extra)
    assert result.code == 2 and message in result.err, result.err
    assert result.err.count("\n") <= 4 and "Traceback" not in result.err


def test_segment_alpha_needs_overlay(tmp_path):
    result = run_cli("segment", photo(tmp_path / "a.png"), "-o", tmp_path / "l.png", "--alpha", "0.3", "-m", NO_MODEL)
    assert result.code == 2 and "add --overlay" in result.err


def test_comma_separated_formats(tiny, tmp_path):
    result = run_cli("depth", photo(tmp_path / "a.png"), "-o", tmp_path / "out", "-f", "png16,color", "-f", "npy", "-m", tiny)
    assert result.code == 0, result.err
    assert sorted(os.listdir(tmp_path / "out")) == ["a.color.png", "a.npy", "a.png", "dpt-run.json"]


# --- 4. stdin -----------------------------------------------------------------------------------

def test_image_bytes_on_stdin(tiny, tmp_path):
    src = photo(tmp_path / "a.jpg")
    assert run_cli("depth", src, "-o", tmp_path / "file.npy", "-m", tiny).code == 0
    result = run_cli("depth", "-", "-o", tmp_path / "piped.npy", "-m", tiny, stdin=src.read_bytes())
    assert result.code == 0, result.err
    assert np.array_equal(np.load(tmp_path / "piped.npy"), np.load(tmp_path / "file.npy"))
    result = run_cli("depth", "-", "-o", tmp_path / "out", "-m", tiny, stdin=src.read_bytes())
    assert result.code == 0 and (tmp_path / "out" / "stdin.png").is_file()


def test_binary_that_is_no_image_on_stdin_fails_in_one_line(tiny, tmp_path):
    result = run_cli("depth", "-", "-o", tmp_path / "x.png", "-m", tiny, stdin=b"\x00\x01garbage" * 10)
    assert result.code == 1 and "-: not an image Pillow can read" in result.err and "Traceback" not in result.err


def test_stdin_is_told_apart_by_its_first_bytes():
    from dpt_cli.pipeline.stdin import looks_like_image

    for fmt in ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "ICO", "TGA", "JPEG2000", "QOI"):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, fmt)
        assert looks_like_image(buffer.getvalue()[:64]), fmt
    for text in (b"/a/b.jpg\n", b"GIF89a-party.jpg\n", b"caf\xe9 \x1b[31m.jpg\n", b"a\0b.jpg\n", b"a.jpg\0b.png\0", b"P6 notes\n"):
        assert not looks_like_image(text), text


def test_stdin_mistakes_are_usage_errors(tmp_path):
    src = photo(tmp_path / "a.jpg")
    result = run_cli("depth", "-0", "-", "-o", tmp_path / "o", "-m", NO_MODEL, stdin=src.read_bytes())
    assert result.code == 2 and "stdin holds an image's bytes: drop -0" in result.err, result.err
    result = run_cli("depth", "-", "-o", tmp_path / "o", "-m", NO_MODEL, stdin=b"a.jpg\0b.png\0")
    assert result.code == 2 and "add -0 (--null)" in result.err, result.err


def test_an_image_trickling_into_a_pipe_is_still_an_image(tiny, tmp_path):
    src = photo(tmp_path / "a.jpg")
    data = src.read_bytes()
    feed = f"import sys, time; d = open({str(src)!r}, 'rb').read(); o = sys.stdout.buffer; " \
           "o.write(d[:2]); o.flush(); time.sleep(1.5); o.write(d[2:]); o.flush()"
    producer = subprocess.Popen([sys.executable, "-c", feed], stdout=subprocess.PIPE)
    proc = subprocess.run([sys.executable, "-m", "dpt_cli", "depth", "-", "-o", str(tmp_path / "d.npy"), "-m", tiny],
                          stdin=producer.stdout, capture_output=True, timeout=120)
    producer.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert run_cli("depth", "-", "-o", tmp_path / "e.npy", "-m", tiny, stdin=data).code == 0
    assert np.array_equal(np.load(tmp_path / "d.npy"), np.load(tmp_path / "e.npy"))


def test_nul_separated_path_list(tiny, tmp_path):
    names = [photo(tmp_path / "in" / "with\nnewline.png"), photo(tmp_path / "in" / "b.png", seed=1)]
    listing = b"".join(os.fsencode(p) + b"\0" for p in names)
    result = run_cli("depth", "-0", "-", "-o", tmp_path / "out", "-m", tiny, stdin=listing)
    assert result.code == 0, result.err
    assert sorted(os.listdir(tmp_path / "out")) == ["b.png", "dpt-run.json", "with\nnewline.png"]


# --- 9. help ------------------------------------------------------------------------------------

def test_help_shows_flags_as_flags_and_examples():
    result = run_cli("depth", "--help")
    assert result.code == 0
    assert "Usage: dpt depth [OPTIONS] INPUT..." in result.out
    assert "<bool>" not in result.out and "<list" not in result.out and "<str>" not in result.out
    flag = next(line for line in result.out.splitlines() if line.lstrip().startswith("--side-by-side"))
    assert flag.split()[:2] == ["--side-by-side", "Also"]  # a flag: no value between it and its help
    assert "Examples:" in result.out and "dpt depth shot.jpg -o - > shot.png" in result.out
    assert "--install-completion" in run_cli("--help").out


def test_usage_errors_are_plain_text():
    result = run_cli("depth")
    assert result.code == 2 and "Missing argument 'INPUT...'" in result.err
    assert not any(c in result.err for c in "╭│╰")


# --- 10. exit codes -----------------------------------------------------------------------------

def test_exit_codes(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    (tmp_path / "bad.png").write_text("not an image")
    assert run_cli("depth", src, "-o", tmp_path / "ok", "-m", tiny).code == 0
    assert run_cli("depth", src, tmp_path / "bad.png", "-o", tmp_path / "some", "-m", tiny).code == 1
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(open(os.path.join(tiny, "config.json")).read())
    result = run_cli("depth", src, "-o", tmp_path / "x", "-m", no_weights)
    assert result.code == 2 and "no model.safetensors" in result.err, result.err
    other = tmp_path / "not-dpt"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    result = run_cli("depth", src, "-o", tmp_path / "x", "-m", other)
    assert result.code == 2 and "'bert', not 'dpt'" in result.err, result.err
    # 130 (interrupted): tests/test_interrupt.py


# --- 11, 12. the summary, precision -------------------------------------------------------------

def test_summary_names_time_place_and_failures(tiny, tmp_path):
    photo(tmp_path / "in" / "a.png")
    for i in range(7):
        (tmp_path / "in" / f"bad{i}.png").write_text("not an image")
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", tiny)
    assert result.code == 1
    lines = result.err.splitlines()
    summary = next(line for line in lines if line.startswith("done 1, skipped 0, failed 7, interrupted 0 in "))
    assert summary.endswith(" images/s)")
    assert f"outputs in {tmp_path}/out/, records in {tmp_path}/out/dpt-run.json" in lines
    assert sum(line.startswith("failed: ") for line in lines) == 5 and "... and 2 more failed (see the records)" in lines


def test_summary_without_work_has_no_speed(tiny, tmp_path):
    src = photo(tmp_path / "a.png")
    run_cli("depth", src, "-o", tmp_path / "out", "-m", tiny)
    result = run_cli("depth", src, "-o", tmp_path / "out", "-m", tiny, "--skip-existing")
    assert "done 0, skipped 1, failed 0, interrupted 0 in " in result.err and "images/s" not in result.err


def test_float16_on_the_cpu_warns(tiny, tmp_path):
    result = run_cli("depth", photo(tmp_path / "a.png"), "-o", tmp_path / "d.png", "-m", tiny, "--dtype", "float16", "--device", "cpu")
    assert result.code == 0 and "float16 on the CPU runs about 20x slower" in result.err


def test_a_model_for_the_other_task_is_refused_from_its_config(tiny, tmp_path):
    config_only = tmp_path / "depth-config-only"  # no weights: the refusal must not need them
    config_only.mkdir()
    (config_only / "config.json").write_text(open(os.path.join(tiny, "config.json")).read())
    result = run_cli("segment", photo(tmp_path / "a.png"), "-o", tmp_path / "l.png", "-m", config_only)
    assert result.code == 2 and "is a depth model; use `dpt depth` for it" in result.err, result.err
