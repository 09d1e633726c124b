"""Shared fixtures: tiny transformers reference models with random weights, saved to folders.

Nothing here touches the network: HF_HUB_OFFLINE is forced on before anything imports the hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch

from reference import ADE, VARIANTS, make_reference


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """name -> (folder, transformers model) for every tiny variant, built once per session."""
    cache = {}

    def get(name: str):
        if name not in cache:
            spec = VARIANTS.get(name) or _extra_variants()[name]
            model = make_reference(spec, seed=len(cache))
            folder = tmp_path_factory.mktemp(name)
            model.save_pretrained(folder)
            cache[name] = (folder, model)
        return cache[name]

    return get


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def _extra_variants() -> dict:
    from dpt_cli import ade20k

    return {"ade": dict(ADE, id2label=ade20k.id2label())}
