"""A killed run leaves no partial output under a final name, and --skip-existing finishes it."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from PIL import Image

from cli import run_cli, spawn
from test_cli_depth import photo


def _wait_for_outputs(folder, proc, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if folder.exists() and len(list(folder.glob("*.npy"))) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"run ended or stalled before {count} outputs: {proc.poll()}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_only_complete_files_and_resumes(saved_models, tmp_path, sig):
    folder, _ = saved_models("large_shaped")
    for i in range(40):
        photo(tmp_path / "in" / f"{i:02d}.png", (300, 400), seed=i)
    out = tmp_path / "out"
    args = ("depth", tmp_path / "in", "-o", out, "-m", folder, "-f", "npy", "-f", "png16", "--workers", "2")
    proc = spawn(*args)
    _wait_for_outputs(out, proc, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130
        summary = next(line for line in err.splitlines() if line.startswith("done "))
        assert ", interrupted " in summary and " in " in summary, err  # counted, and timed
        assert "interrupted: run the same command with --skip-existing to finish the rest" in err
        manifest = json.loads((out / "dpt-run.json").read_text())
        assert manifest["runs"][-1]["interrupted"] and manifest["runs"][-1]["counts"]["interrupted"] > 0
    else:
        assert proc.returncode == -signal.SIGKILL
    finished = sorted(out.glob("*.npy"))
    assert 0 < len(finished) < 40
    for path in finished:  # every file under a final name is complete
        assert np.load(path).shape == (300, 400)
    for path in out.glob("*.png"):
        assert Image.open(path).size == (400, 300) and Image.open(path).load() is not None
    resumed = run_cli(*args, "--skip-existing")
    assert resumed.code == 0, resumed.err
    assert len(list(out.glob("*.npy"))) == 40
    if sig == signal.SIGTERM:  # a handled interruption also removes its temporary files
        assert not list(out.glob(".*.partial"))
    manifest = json.loads((out / "dpt-run.json").read_text())
    counts = manifest["runs"][-1]["counts"]
    assert counts["failed"] == 0 and counts["ok"] + counts["skipped"] == 40
