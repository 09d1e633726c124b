"""Shared fixtures: tiny transformers reference models with random weights, saved to folders, and
fake original isl-org checkpoints.

Nothing here touches the network: HF_HUB_OFFLINE is forced on before anything imports the hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch

from isl_org import LAYOUTS, fake_checkpoint
from reference import ADE, VARIANTS, make_reference


# A fixed seed per variant, not per call order (which depends on which tests run first), chosen so
# that the random model's depth is non-zero almost everywhere: with some seeds the final ReLU
# zeroes the whole output, and a comparison of zeros with zeros proves nothing.
SEEDS = {"large_shaped": 2, "readout_add": 2, "readout_ignore": 3, "projection": 1, "hybrid": 0, "dinov2_dpt": 1, "depth_anything": 4}


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """name -> (folder, transformers model) for every tiny variant, built once per session."""
    cache = {}

    def get(name: str):
        if name not in cache:
            spec = VARIANTS.get(name) or _extra_variants()[name]
            model = make_reference(spec, seed=SEEDS.get(name, 0))
            folder = tmp_path_factory.mktemp(name)
            model.save_pretrained(folder)
            cache[name] = (folder, model)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def originals(tmp_path_factory):
    """layout -> path of a fake original checkpoint (named without a release hash), built once."""
    cache = {}

    def get(layout: str):
        if layout not in cache:
            path = tmp_path_factory.mktemp("orig") / f"{layout.replace('-', '_')}.pt"
            # A seed per layout, not per call order: test files share this fixture, and with some
            # seeds a layout's random head outputs only zeros (ReLU), which comparisons cannot use.
            torch.save(fake_checkpoint(layout, seed=LAYOUTS.index(layout)), path)
            cache[layout] = path
        return cache[layout]

    return get


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def _extra_variants() -> dict:
    from dpt_cli import ade20k

    return {"ade": dict(ADE, id2label=ade20k.id2label())}
