"""Property: for random mixtures of relative, absolute, `..`-laden and symlinked input paths, every
planned output lies under -o (as written and resolved) and no input is ever an output; a few
random mixtures also go through the real CLI, which must leave the input tree byte-identical."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cli import run_cli
from dpt_cli.errors import UsageError
from dpt_cli.pipeline.destination import FOLDER, Destination
from dpt_cli.pipeline.inputs import expand
from dpt_cli.pipeline.outputs import plan
from test_cli_depth import photo
from test_hostile_paths import snapshot

FILES = ["a/x.jpg", "a/y.png", "b/c/x.jpg", "b/z.jpg", "d/w.png"]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    for i, name in enumerate(FILES):
        photo(root / name, (20, 24), seed=i)
    os.symlink("b", root / "link_b")  # a second name for a folder
    os.symlink("../..", root / "b" / "c" / "up")  # a loop
    os.symlink("../a/x.jpg", root / "d" / "alias.jpg")  # a second name for a file
    (tmp_path / "elsewhere").mkdir()
    return root


def spelling(rng: random.Random, root, name: str, cwd: str) -> str:
    """One of many ways to name root/name."""
    parts = name.split("/")
    if parts[0] == "b" and rng.random() < 0.4:
        parts[0] = "link_b"
    if len(parts) > 1 and rng.random() < 0.4:
        i = rng.randrange(len(parts) - 1)
        parts.insert(i + 1, f"../{parts[i]}")  # a/../a/x.jpg
    if rng.random() < 0.2:
        parts.insert(0, ".")
    path = os.path.join(str(root), *parts)
    style = rng.choice(["absolute", "relative", "dotdot"])
    if style == "relative":
        path = os.path.relpath(path, cwd)
    elif style == "dotdot":
        path = os.path.join(str(root), "a", "..", os.path.relpath(path, root))
    return path.replace("/", "//", 1) if rng.random() < 0.1 else path


def output_choice(rng: random.Random, tmp_path, root) -> str:
    return rng.choice([str(tmp_path / "out"), str(root / "out"), str(root / "a"), str(tmp_path / "elsewhere" / ".." / "o2")])


def check_plan(items, planned, out: str) -> None:
    lexical_out = os.path.normpath(os.path.abspath(out))
    real_out = os.path.realpath(out)
    inputs = {os.path.realpath(i.path) for i in items}
    for outs in planned.outputs:
        for p in outs.values():
            lexical = os.path.normpath(os.path.abspath(p))
            assert lexical.startswith(lexical_out + os.sep), (p, out)
            assert os.path.realpath(os.path.dirname(lexical)).startswith(real_out), (p, out)
            assert os.path.realpath(p) not in inputs


def test_every_planned_output_lies_under_the_output_folder(tree, tmp_path, monkeypatch):
    rng = random.Random(1234)
    folders = [tmp_path, tree, tree / "a", tree / "b" / "c"]
    refused = 0
    for _ in range(300):
        cwd = rng.choice(folders)
        monkeypatch.chdir(cwd)
        chosen = rng.sample(FILES + ["d/alias.jpg"], rng.randint(1, 6))
        specs = [spelling(rng, tree, name, str(cwd)) for name in chosen]
        if rng.random() < 0.3:
            specs.append(rng.choice([str(tree), os.path.relpath(tree / "link_b", cwd), str(tree / "b" / "c" / "up")]))
        out = output_choice(rng, tmp_path, tree)
        recursive, follow = rng.random() < 0.5, rng.random() < 0.5
        items, _ = expand(specs, recursive, None, (out,), follow)
        assert len({os.path.realpath(i.path) for i in items}) == len(items)  # one file, one output
        if not items:
            continue
        try:
            planned = plan("depth", items, Destination(FOLDER, Path(out)), ["png16", "npy"])
        except UsageError as exc:
            refused += 1
            assert "is one of the inputs" in str(exc) or "outside -o" in str(exc), exc
            continue
        check_plan(items, planned, out)
    assert refused < 300  # the property was exercised, not only refusals


def test_random_mixtures_through_the_cli_never_touch_inputs(tree, tmp_path, monkeypatch, saved_models):
    folder = str(saved_models("readout_add")[0])
    rng = random.Random(99)
    for trial in range(3):
        cwd = rng.choice([tmp_path, tree / "a"])
        monkeypatch.chdir(cwd)
        specs = [spelling(rng, tree, name, str(cwd)) for name in rng.sample(FILES + ["d/alias.jpg"], 4)]
        before = snapshot(tree)
        out = tmp_path / f"cli-out-{trial}"
        result = run_cli("depth", *specs, "-o", out, "-m", folder)
        assert result.code == 0, (specs, result.err)
        after = snapshot(tree)
        assert after == before, specs
        written = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
        assert written and all(os.path.realpath(p).startswith(os.path.realpath(out) + os.sep) for p in written)
