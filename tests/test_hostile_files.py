"""Hostile files and lists, through the real CLI where it matters: malformed multi-page files,
input folders behind symbolic links, NUL bytes, `**` patterns over link loops, broken
preprocessing configs, odd class names, parallel single-file runs, and the bounds on what is
read or counted."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import run_cli
from dpt_cli.errors import UsageError
from dpt_cli.pipeline import images
from dpt_cli.pipeline.inputs import read_path_list
from dpt_cli.pipeline.outputs import name_problem
from test_cli_depth import photo
from test_hostile_paths import strict_json


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def malformed_tiff(path) -> None:
    """A two-page TIFF whose second page names an unknown compression (Pillow: KeyError)."""
    pages = [Image.fromarray(np.full((20, 24, 3), v, np.uint8)) for v in (10, 200)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    data = bytearray(buffer.getvalue())
    entry = bytes([3, 1, 3, 0, 1, 0, 0, 0, 1, 0])  # tag 259 (compression), SHORT, 1, value 1
    second = [i for i in range(len(data)) if data[i : i + 10] == entry][1]
    data[second + 8 : second + 10] = (12345).to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_a_malformed_later_page_does_not_stop_the_batch(tiny, tmp_path):
    (tmp_path / "in").mkdir()
    malformed_tiff(tmp_path / "in" / "pages.tif")
    photo(tmp_path / "in" / "ok.jpg")
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", tiny, "-f", "npy")
    assert result.code == 0, result.err
    assert sorted(os.listdir(tmp_path / "out")) == ["dpt-run.json", "ok.npy", "pages.npy"]


def test_frame_counting_is_bounded(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in range(0, 250, 10)]
    frames[0].save(tmp_path / "many.gif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "many.gif") as im:
        assert images.count_frames(im) == 25 and images.count_frames(im, cap=5) == 5
        assert im.tell() == 0  # left on its first frame


def test_an_input_folder_behind_a_link_still_excludes_its_outputs(tiny, tmp_path, monkeypatch):
    photo(tmp_path / "real" / "p0.jpg")
    os.symlink("real", tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # -o inside the input tree, then the rerun that resumes it
        result = run_cli("depth", "photos", "-r", "-o", "photos/out", "-m", tiny, "--skip-existing")
        assert result.code == 0, result.err
    for _ in range(2):  # -o the input folder itself, twice
        result = run_cli("depth", "photos", "-o", "photos", "-m", tiny, "--skip-existing")
        assert result.code == 0, result.err
    assert sorted(os.listdir(tmp_path / "real")) == ["dpt-run.json", "out", "p0.jpg", "p0.png"]
    assert sorted(os.listdir(tmp_path / "real" / "out")) == ["dpt-run.json", "p0.png"]


def test_a_nul_byte_in_the_path_list_is_one_line(tiny, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dpt_cli", "depth", "-", "-o", str(tmp_path / "out"), "-m", tiny],
                          input=b"a\0b.jpg\n", capture_output=True, timeout=120)
    assert proc.returncode == 1 and b"dpt: a\\0b.jpg: a file name cannot hold a NUL byte" in proc.stderr, proc.stderr
    assert b"Traceback" not in proc.stderr


def test_double_star_obeys_the_link_policy_and_ends_on_loops(tiny, tmp_path):
    photo(tmp_path / "photos" / "a" / "1.jpg")
    photo(tmp_path / "elsewhere" / "2.jpg")
    os.symlink("../../elsewhere", tmp_path / "photos" / "a" / "link")
    for name in ("s1", "s2"):  # with Python's glob: 2^40 paths
        os.symlink(".", tmp_path / "photos" / name)
    pattern = str(tmp_path / "photos" / "**" / "*.jpg")
    plain = run_cli("depth", pattern, "-r", "-o", tmp_path / "plain", "-m", tiny)
    assert plain.code == 0, plain.err
    assert sorted(os.listdir(tmp_path / "plain")) == ["1.png", "dpt-run.json"]
    followed = run_cli("depth", pattern, "-r", "--follow-symlinks", "-o", tmp_path / "followed", "-m", tiny)
    assert followed.code == 0, followed.err
    assert sorted(strict_json(tmp_path / "followed" / "dpt-run.json")["files"][i]["input"].rsplit("/", 1)[-1] for i in range(2)) == ["1.jpg", "2.jpg"]


@pytest.mark.parametrize(
    "settings, field",
    [({"image_mean": "abc"}, "image_mean"), ({"image_std": [0.5, 0, 0.5]}, "image_std"),
     ({"image_mean": [1e400, 0, 0]}, "image_mean"), ({"size": 99999}, "size"), ({"size": {"height": -3, "width": 4}}, "size")],
)
def test_a_broken_preprocessor_config_is_a_usage_error(tiny, tmp_path, settings, field):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    (model / "preprocessor_config.json").write_text(json.dumps(settings).replace("Infinity", "1e400"))
    result = run_cli("depth", photo(tmp_path / "a.png"), "-o", tmp_path / "d.png", "-m", model)
    assert result.code == 2 and f"field '{field}'" in result.err, result.err
    assert not (tmp_path / "d.png").exists()


def test_class_names_of_any_text_keep_the_manifest_strict(saved_models, tmp_path):
    folder, _ = saved_models("seg")
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    text = (model / "config.json").read_text()
    config = json.loads(text)
    config["id2label"] = {k: f"wall\\ud800\n{k}" for k in config["id2label"]}  # a lone surrogate, a newline
    (model / "config.json").write_text(json.dumps(config).replace("\\\\ud800", "\\ud800"))
    result = run_cli("segment", photo(tmp_path / "a.png"), "-o", tmp_path / "l.png", "-m", model)
    assert result.code == 0, result.err
    names = [c["name"] for c in strict_json(tmp_path / "dpt-run.json")["files"][0]["classes"]]
    assert names and all(n.startswith("wall\\ud800\\n") for n in names)


def test_parallel_single_file_runs_share_a_folder(tiny, tmp_path):
    srcs = [photo(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-m", "dpt_cli", "depth", str(s), "-o", str(tmp_path / "out" / f"{i}.png"), "-m", tiny, "-q"],
                              stderr=subprocess.PIPE) for i, s in enumerate(srcs)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["0.png", "1.png", "2.png", "dpt-run.json"]  # the lock is gone


def test_bounds_on_what_is_read(tmp_path):
    with pytest.raises(UsageError, match="over"):
        read_path_list(io.StringIO("a.jpg\n" * 100), limit=50)
    assert read_path_list(io.StringIO("a.jpg\n\nb.jpg\n"), limit=50) == ["a.jpg", "b.jpg"]
    assert name_problem(tmp_path / ("d" * 255)) is None
    assert "output name too long" in name_problem(tmp_path / ("d" * 256))
    deep = Path("/" + "/".join(["d" * 200] * 20)) / ("n" * 64)  # 4085 bytes: its temporary sibling would not fit
    assert len(str(deep)) == 4085 and "output path too long" in name_problem(deep)
