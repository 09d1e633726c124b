"""`torchrun -m dpt_cli depth`: 2 ranks on the CPU (gloo). Each photo done once, outputs equal to
one process's, one manifest, one exit status; a killed rank loses nothing; a slow rank takes less."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import run_cli

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
# loaded by every rank (PYTHONPATH): DPT_TEST_SLOW="RANK:SECONDS" makes that rank's writes slow
SLOW_HOOK = '''
import os, time
rank, _, seconds = os.environ.get("DPT_TEST_SLOW", "").partition(":")
if seconds and os.environ.get("RANK") == rank:
    from dpt_cli.pipeline import encoding
    original = encoding.write_depth
    def slow(*args, **kwargs):
        time.sleep(float(seconds))
        return original(*args, **kwargs)
    encoding.write_depth = slow
'''


@pytest.fixture
def tiny(saved_models):
    return str(saved_models("readout_add")[0])


def photos(folder: Path, n: int, size=(60, 80)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


def torchrun(tmp_path: Path, *args, slow: str = "", **kwargs) -> subprocess.Popen:
    (tmp_path / "hook").mkdir(exist_ok=True)
    (tmp_path / "hook" / "sitecustomize.py").write_text(SLOW_HOOK)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tmp_path / "hook"), DPT_TEST_SLOW=slow)
    return subprocess.Popen([*TORCHRUN, "-m", "dpt_cli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, **kwargs)


def records(out: Path) -> list[dict]:
    return json.loads((out / "dpt-run.json").read_text())["files"]


def test_two_ranks_do_each_photo_once_as_one_process_would(tiny, tmp_path):
    src = photos(tmp_path / "in", 40)
    for i in range(3):
        (src / f"bad{i}.png").write_text("not an image")
    proc = torchrun(tmp_path, "depth", src, "-o", tmp_path / "job", "-m", tiny, "-f", "npy,png16")
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, log  # some photos failed: exit 1 on every rank, so the job fails
    assert "job of 2 ranks: done 40, skipped 0, failed 3" in log and "exit 1" in log, log
    # torchrun itself reports failed ranks with its own traceback; none may come from dpt
    assert not any("dpt_cli" in line for line in log.splitlines() if line.strip().startswith("File "))
    files = records(tmp_path / "job")
    assert len(files) == 43 and len({f["input"] for f in files}) == 43
    assert Counter(f["status"] for f in files) == {"ok": 40, "failed": 3}
    assert set(Counter(f["rank"] for f in files)) == {0, 1}

    single = run_cli("depth", src, "-o", tmp_path / "one", "-m", tiny, "-f", "npy,png16")
    assert single.code == 1
    for i in range(40):
        ours, one = (np.load(tmp_path / d / f"p{i:02d}.npy") for d in ("job", "one"))
        np.testing.assert_allclose(ours, one, rtol=1e-6, atol=1e-6 * float(np.abs(one).max()))
        a, b = (np.asarray(Image.open(tmp_path / d / f"p{i:02d}.png")).astype(int) for d in ("job", "one"))
        assert np.abs(a - b).max() <= 1


def _ranks(parent: int) -> list[int]:
    """The worker processes torchrun started (its children running dpt_cli)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"dpt_cli" in cmdline:
            found.append(int(pid))
    return found


def test_a_killed_rank_loses_nothing_and_skip_existing_finishes(tiny, tmp_path):
    src = photos(tmp_path / "in", 40)
    out = tmp_path / "out"
    args = ("depth", src, "-o", out, "-m", tiny, "-f", "npy,png16")
    proc = torchrun(tmp_path, *args, slow="1:0.2")
    deadline = time.time() + 120
    while len(list(out.glob("*.npy"))) < 6 and time.time() < deadline:
        time.sleep(0.1)
    victims = _ranks(proc.pid)
    assert len(victims) == 2, victims
    os.kill(max(victims), signal.SIGKILL)
    killed = time.monotonic()
    log, _ = proc.communicate(timeout=120)  # the job ends: no hang
    assert proc.returncode != 0
    # the survivor left when torchrun asked (SIGTERM), not when torchrun gave up on it (SIGKILL)
    assert "forcefully exiting" not in log and time.monotonic() - killed < 25, log
    finished = sorted(out.glob("*.npy"))
    assert 0 < len(finished) < 40, log
    for path in finished:  # nothing truncated under a final name
        assert np.load(path).shape == (60, 80)
    resumed = run_cli(*args, "--skip-existing")
    assert resumed.code == 0, resumed.err
    assert len(list(out.glob("*.npy"))) == 40 and len(list(out.glob("*.png"))) == 40


def test_a_slow_rank_takes_less_work(tiny, tmp_path):
    src = photos(tmp_path / "in", 80)
    start = time.monotonic()
    proc = torchrun(tmp_path, "depth", src, "-o", tmp_path / "out", "-m", tiny, "-f", "npy", "--workers", "1", slow="1:2.0")
    log, _ = proc.communicate(timeout=300)
    wall = time.monotonic() - start
    assert proc.returncode == 0, log
    by_rank = Counter(f["rank"] for f in records(tmp_path / "out"))
    assert by_rank[0] + by_rank[1] == 80
    # rank 1 writes one photo a second (2 writer threads, 2 s each): a static half/half split
    # would keep it busy 40 s; the hand-out leaves it the photos in its pipeline and a few more
    assert by_rank[0] >= 2 * by_rank[1], by_rank
    assert wall < 40, (wall, by_rank)


@pytest.mark.parametrize("extra, message", [
    (["-o", "-"], "many processes cannot share stdout"),
    (["-o", "{out}", "--range", "auto"], "--range auto needs one process to see every photo"),
    (["-o", "{out}", "--device", "cuda:1"], "each rank uses cuda:LOCAL_RANK"),
])
def test_what_a_job_cannot_do_is_refused(tmp_path, monkeypatch, extra, message):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets them; refused before joining
    src = photos(tmp_path / "in", 1) / "p00.png"
    result = run_cli("depth", src, *[a.format(out=tmp_path / "out") for a in extra], "-m", "/nonexistent")
    assert result.code == 2 and message in result.err, result.err


def test_a_path_list_on_stdin_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = run_cli("depth", "-", "-o", tmp_path / "out", "-m", "/nonexistent", stdin="a.png\n")
    assert result.code == 2 and "every rank would read its own part of stdin" in result.err, result.err


def test_an_interrupted_job_records_every_input(tiny, tmp_path):
    src = photos(tmp_path / "in", 40)
    out = tmp_path / "out"
    proc = torchrun(tmp_path, "depth", src, "-o", out, "-m", tiny, "-f", "npy", slow="0:0.3", start_new_session=True)
    deadline = time.time() + 120
    while len(list(out.glob("*.npy"))) < 4 and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    files = records(out)
    assert len(files) == 40 and len({f["input"] for f in files}) == 40, (len(files), log)
    statuses = Counter(f["status"] for f in files)
    assert statuses["ok"] == len(list(out.glob("*.npy"))) and statuses["interrupted"] == 40 - statuses["ok"], statuses
