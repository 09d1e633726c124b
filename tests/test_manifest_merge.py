"""dpt-run.json accumulates across runs: records merged by output, a run history, relative paths,
an unreadable manifest set aside, the format-1 layout read."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import pytest

from cli import run_cli
from dpt_cli.pipeline.manifest import FileRecord, RunInfo, recorded_outputs, write_manifest
from test_cli_depth import photo


def info(**kw) -> RunInfo:
    return RunInfo(task="depth", model="tiny", device="cpu", dtype="float32", units="u", settings={"k": 1}, command=["dpt", "depth"], **kw)


def rec(tmp_path, name, status="ok", lo=None, hi=None, **kw) -> FileRecord:
    outs = kw.pop("outputs", [f"{name}.png"])
    return FileRecord(input=str(tmp_path / "in" / f"{name}.jpg"), outputs=[str(tmp_path / "out" / o) for o in outs],
                      status=status, min=lo, max=hi, **kw)


def write(tmp_path, records, interrupted=False) -> dict:
    path = tmp_path / "out" / "dpt-run.json"
    write_manifest(path, info(), records, interrupted)
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))


def test_a_manifest_accumulates_and_failed_or_skipped_files_keep_their_ranges(tmp_path):
    names = [f"p{i}" for i in range(10)]
    doc = write(tmp_path, [rec(tmp_path, n, lo=float(i), hi=i + 0.5) for i, n in enumerate(names)])
    assert doc["format"] == 2 and doc["conventions"]["sizes"] == "[height, width] in pixels"
    assert [r["run"] for r in doc["runs"]] == [1] and doc["runs"][0]["command"] == ["dpt", "depth"]
    first = doc["files"]

    exists = "output exists (use --overwrite to replace it, or --skip-existing)"
    doc = write(tmp_path, [rec(tmp_path, n, "failed", error=f"{n}.png: {exists}") for n in names])
    assert doc["runs"][1]["counts"] == {"ok": 0, "skipped": 0, "failed": 10, "interrupted": 0}
    for old, new, n in zip(first, doc["files"], names):
        assert new.pop("last_attempt") == {"run": 2, "status": "failed", "error": f"{n}.png: {exists}"}
        assert new == old  # the ok record, its min/max and run unchanged

    doc = write(tmp_path, [rec(tmp_path, n, "skipped") for n in names])
    assert all(f["status"] == "ok" and f["last_attempt"] == {"run": 3, "status": "skipped"} for f in doc["files"])
    assert [(f["min"], f["max"]) for f in doc["files"]] == [(float(i), i + 0.5) for i in range(10)]

    doc = write(tmp_path, [rec(tmp_path, "extra", lo=-1.0, hi=1.0)])  # one more file into the folder
    assert len(doc["files"]) == 11 and [r["run"] for r in doc["runs"]] == [1, 2, 3, 4]
    assert [f["outputs"] for f in doc["files"]] == [[f"{n}.png"] for n in [*names, "extra"]]
    assert doc["files"][-1]["run"] == 4 and doc["files"][0]["min"] == 0.0


def test_a_new_result_replaces_the_old_in_place_and_a_failure_without_one_is_kept(tmp_path):
    write(tmp_path, [rec(tmp_path, "a", lo=0.0, hi=1.0), rec(tmp_path, "b", lo=0.0, hi=2.0)])
    doc = write(tmp_path, [rec(tmp_path, "c", "failed", error="broken"), rec(tmp_path, "a", lo=5.0, hi=6.0)])
    assert [(f["outputs"], f["status"], f.get("max"), f["run"]) for f in doc["files"]] == [
        (["a.png"], "ok", 6.0, 2), (["b.png"], "ok", 2.0, 1), (["c.png"], "failed", None, 2)]
    assert "last_attempt" not in doc["files"][0]
    doc = write(tmp_path, [rec(tmp_path, "c", "interrupted")])  # a later attempt replaces an earlier failure
    assert doc["files"][2]["status"] == "interrupted" and len(doc["files"]) == 3
    doc = write(tmp_path, [rec(tmp_path, "c", lo=1.0, hi=3.0)])
    assert doc["files"][2]["status"] == "ok" and len(doc["files"]) == 3


def test_records_are_keyed_by_output(tmp_path):
    write(tmp_path, [rec(tmp_path, "a", lo=0.0, hi=1.0, outputs=["a.png", "a.npy"])])
    doc = write(tmp_path, [rec(tmp_path, "a", lo=2.0, hi=3.0, outputs=["a.png"])])  # -o out/a.png
    assert [(f["outputs"], f["max"]) for f in doc["files"]] == [(["a.npy"], 1.0), (["a.png"], 3.0)]
    # a failed attempt at both: a.png and a.npy keep their records, a new output gets the failure
    doc = write(tmp_path, [rec(tmp_path, "a", "failed", error="x", outputs=["a.png", "a.npy", "a.pfm"])])
    assert [(f["outputs"], f["status"]) for f in doc["files"]] == [(["a.npy"], "ok"), (["a.png"], "ok"), (["a.pfm"], "failed")]
    assert doc["files"][0]["last_attempt"] == doc["files"][1]["last_attempt"] == {"run": 3, "status": "failed", "error": "x"}


def test_records_without_outputs_are_keyed_by_input(tmp_path):
    missing = FileRecord(input=str(tmp_path / "in" / "a.jpg"), status="failed", error="a.jpg: no such file")
    write(tmp_path, [missing])
    doc = write(tmp_path, [missing])
    assert len(doc["files"]) == 1 and doc["files"][0]["run"] == 2
    doc = write(tmp_path, [rec(tmp_path, "a", lo=0.0, hi=1.0)])  # the input appeared and was done
    assert [(f["input"], f["status"]) for f in doc["files"]] == [("../in/a.jpg", "ok")]


def test_paths_are_relative_to_the_manifest_folder(tmp_path, monkeypatch):
    odd = os.fsdecode(b"caf\xe9")
    records = [rec(tmp_path, "a", outputs=["sub/a.png"]), rec(tmp_path, odd),
               FileRecord(input="/dev/stdin", outputs=[str(tmp_path / "out" / "stdin.png")], status="ok"),
               FileRecord(input="-", outputs=[str(tmp_path / "out" / "stdin.npy")], status="ok")]
    monkeypatch.chdir(tmp_path.parent)
    doc = write(tmp_path, records)
    assert doc["conventions"]["paths"] == "relative to the folder of this file"
    a, b, s, d = doc["files"]
    assert (a["input"], a["outputs"]) == ("../in/a.jpg", ["sub/a.png"])
    assert (s["input"], s["outputs"], d["input"]) == ("/dev/stdin", ["stdin.png"], "-")
    assert b["input"] == "../in/caf\\xe9.jpg" and base64.b64decode(b["input_b64"]) == b"../in/caf\xe9.jpg"
    assert base64.b64decode(b["outputs_b64"][0]) == b"caf\xe9.png"
    (tmp_path / "in").mkdir()
    monkeypatch.chdir(tmp_path / "in")  # read back from elsewhere, through a relative name
    want = {tmp_path / "out" / n for n in ("sub/a.png", f"{odd}.png", "stdin.png", "stdin.npy")}
    assert recorded_outputs(Path(os.path.relpath(tmp_path / "out" / "dpt-run.json"))) == want


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"files": 3}', b'{"format": 9, "files": [], "runs": []}',
                                     b'{"format": 2, "runs": [], "files": [{"outputs": []}]}'])
def test_an_unreadable_manifest_is_set_aside_not_destroyed(tmp_path, content):
    path = tmp_path / "out" / "dpt-run.json"
    path.parent.mkdir()
    path.write_bytes(content)
    assert recorded_outputs(path) == set()
    doc = write(tmp_path, [rec(tmp_path, "a", lo=0.0, hi=1.0)])
    assert (tmp_path / "out" / "dpt-run.json.corrupt").read_bytes() == content
    assert len(doc["runs"]) == 1 and "kept as dpt-run.json.corrupt" in doc["runs"][0]["note"]
    path.write_bytes(content)
    write(tmp_path, [rec(tmp_path, "a", lo=0.0, hi=1.0)])
    assert (tmp_path / "out" / "dpt-run.json.corrupt.1").read_bytes() == content


def test_a_format_1_manifest_is_read_and_converted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    old = {"dpt_version": "0.1.0", "task": "depth", "model": "large", "device": "cpu", "dtype": "float32",
           "units": "u", "settings": {}, "started": "then", "finished": "later", "interrupted": False,
           "counts": {"ok": 2}, "files": [
               {"input": "in/a.jpg", "outputs": [str(out / "a.png")], "status": "ok", "min": 0.5, "max": 2.5},
               {"input": "in/b.jpg", "outputs": [str(out / "b.png")], "status": "ok", "min": 1.0, "max": 4.0}]}
    (out / "dpt-run.json").write_text(json.dumps(old))
    assert recorded_outputs(out / "dpt-run.json") == {out / "a.png", out / "b.png"}
    doc = write(tmp_path, [rec(tmp_path, "a", "skipped"), rec(tmp_path, "c", lo=0.0, hi=1.0)])
    assert doc["runs"][0] == {"run": 1, "dpt_version": "0.1.0", "started": "then", "finished": "later", "command": [],
                              **{k: old[k] for k in ("task", "model", "device", "dtype", "units", "settings", "interrupted", "counts")}}
    assert [(f["input"], f["outputs"], f["status"], f.get("max"), f["run"]) for f in doc["files"]] == [
        ("../in/a.jpg", ["a.png"], "ok", 2.5, 1), ("../in/b.jpg", ["b.png"], "ok", 4.0, 1), ("../in/c.jpg", ["c.png"], "ok", 1.0, 2)]
    assert doc["files"][0]["last_attempt"] == {"run": 2, "status": "skipped"}


def test_non_finite_values_are_null_and_parallel_writers_all_land(tmp_path):
    doc = write(tmp_path, [rec(tmp_path, "nan", lo=float("nan"), hi=float("inf"))])
    assert doc["files"][0]["min"] is None and doc["files"][0]["max"] is None
    threads = [threading.Thread(target=write, args=(tmp_path, [rec(tmp_path, f"t{i}", lo=0.0, hi=1.0)])) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = json.loads((tmp_path / "out" / "dpt-run.json").read_text())
    assert len(doc["files"]) == 9 and [r["run"] for r in doc["runs"]] == list(range(1, 10))
    assert not [n for n in os.listdir(tmp_path / "out") if n != "dpt-run.json"]  # no lock or temporary file left


def test_reruns_through_the_cli_keep_every_record(saved_models, tmp_path):
    model = saved_models("readout_add")[0]
    for i in range(10):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    out = tmp_path / "out"
    args = ("depth", tmp_path / "in", "-o", out, "-m", model)

    def manifest():
        return json.loads((out / "dpt-run.json").read_text())

    assert run_cli(*args).code == 0
    first = {f["input"]: f for f in manifest()["files"]}
    assert len(first) == 10 and first["../in/p0.png"]["outputs"] == ["p0.png"]
    assert all(f["status"] == "ok" and f["max"] > f["min"] for f in first.values())

    photo(tmp_path / "in" / "p10.png", seed=10)  # one new input: the rerun runs, and fails on the other ten
    again = run_cli(*args)
    assert again.code == 1 and "output exists" in again.err
    (out / "p3.png").unlink()
    assert run_cli(*args, "--skip-existing").code == 0
    extra = photo(tmp_path / "more" / "extra.png", seed=99)
    assert run_cli("depth", extra, "-o", out / "extra.png", "-m", model).code == 0

    doc = manifest()
    assert [r["run"] for r in doc["runs"]] == [1, 2, 3, 4]
    assert [r["counts"]["failed"] for r in doc["runs"]] == [0, 10, 0, 0] and doc["runs"][2]["counts"]["skipped"] == 10
    files = {f["input"]: f for f in doc["files"]}
    assert len(doc["files"]) == 12 and files["../more/extra.png"]["run"] == 4 and files["../in/p10.png"]["run"] == 2
    assert [f["input"] for f in doc["files"]][-2:] == ["../in/p10.png", "../more/extra.png"]
    for name, old in first.items():
        new = files[name]
        assert (new["status"], new["min"], new["max"]) == ("ok", old["min"], old["max"])
        if name == "../in/p3.png":
            assert new["run"] == 3 and "last_attempt" not in new
        else:
            assert new["run"] == 1 and new["last_attempt"] == {"run": 3, "status": "skipped"}
    assert sorted(os.listdir(out)) == sorted([f"p{i}.png" for i in range(11)] + ["extra.png", "dpt-run.json"])


def test_a_folder_that_cannot_be_flocked_uses_a_lock_file(tmp_path, monkeypatch):
    import errno
    import fcntl
    import stat as stat_module

    from dpt_cli.pipeline import manifest

    real, locked = fcntl.flock, []

    def nfs_like(fd, op):  # NFS: flock becomes a POSIX lock, refused on a read-only folder handle
        if stat_module.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        locked.append(fd)
        return real(fd, op)

    monkeypatch.setattr(manifest.fcntl, "flock", nfs_like)
    info = manifest.RunInfo("depth", "m", "cpu", "float32", "u", {})
    record = manifest.FileRecord(input=str(tmp_path / "a.jpg"), outputs=[str(tmp_path / "a.png")], status="ok")
    manifest.write_manifest(tmp_path / "dpt-run.json", info, [record], False)
    assert locked and (tmp_path / manifest.LOCK_FILE).exists()
    assert len(json.loads((tmp_path / "dpt-run.json").read_text())["files"]) == 1
