"""The command line through real invocations: exit codes, output, and no torch for --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dpt_cli


def dpt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dpt_cli", *args], capture_output=True, text=True, timeout=120)


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from dpt_cli.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'numpy', 'safetensors', 'huggingface_hub') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "depth estimation" in done.stdout


def test_version():
    done = dpt("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"dpt {dpt_cli.__version__}"


def test_info_describes_a_model(saved_models):
    folder, ref = saved_models("hybrid_seg")
    done = dpt("info", str(folder))
    assert done.returncode == 0, done.stderr
    assert "segmentation" in done.stdout and "ViT-Hybrid" in done.stdout
    assert f"{sum(p.numel() for p in ref.parameters()):,}" in done.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("info", "no/such/dir/here"), 2, "no such folder"),
        (("info", "nonsense"), 2, "not a hub id"),
        (("frobnicate",), 2, "No such command"),
        (("info",), 2, "Missing argument"),
    ],
)
def test_user_errors_exit_cleanly(args, code, message):
    done = dpt(*args)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_broken_model_folder_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "dpt"}')
    done = dpt("info", str(tmp_path))
    assert done.returncode == 2  # a model that cannot be used is a usage error, as the README says
    assert done.stderr.strip().count("\n") == 0
    assert "field 'hidden_size' is missing" in done.stderr
