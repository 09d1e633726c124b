"""Shared fixtures: tiny transformers reference models with random weights, saved to folders.

Nothing here touches the network: HF_HUB_OFFLINE is forced on before anything imports the hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch

from reference import VARIANTS, make_reference


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """name -> (folder, transformers model) for every tiny variant, built once per session."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = make_reference(VARIANTS[name], seed=len(cache))
            folder = tmp_path_factory.mktemp(name)
            model.save_pretrained(folder)
            cache[name] = (folder, model)
        return cache[name]

    return get


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
