"""Model names -> local folders: a folder path, a short alias, or a Hugging Face hub id (cached)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..text import os_reason, shown

ALIASES = {
    "large": "Intel/dpt-large",
    "hybrid": "Intel/dpt-hybrid-midas",
    "large-ade": "Intel/dpt-large-ade",
    # MiDaS v3.1
    "beit-large-512": "Intel/dpt-beit-large-512",
    "beit-large-384": "Intel/dpt-beit-large-384",
    "beit-base-384": "Intel/dpt-beit-base-384",
    "swinv2-large-384": "Intel/dpt-swinv2-large-384",
    "swinv2-base-384": "Intel/dpt-swinv2-base-384",
    "swinv2-tiny-256": "Intel/dpt-swinv2-tiny-256",
    # Depth Anything V2 (relative; metric indoor = Hypersim, 20 m; outdoor = VKITTI, 80 m) and V1
    **{f"da2-{s}": f"depth-anything/Depth-Anything-V2-{s.title()}-hf" for s in ("small", "base", "large")},
    **{f"da2-metric-{where}-{s}": f"depth-anything/Depth-Anything-V2-Metric-{where.title()}-{s.title()}-hf"
       for where in ("indoor", "outdoor") for s in ("small", "base", "large")},
    **{f"da1-{s}": f"LiheYoung/depth-anything-{s}-hf" for s in ("small", "base", "large")},
    # DPT on DINOv2 (metres; NYU up to 10 m, KITTI up to 80 m)
    **{f"dinov2-{s}-{d}": f"facebook/dpt-dinov2-{s}-{d}" for s in ("small", "base", "large", "giant") for d in ("nyu", "kitti")},
}
# The dinov2 depther clamps its metres to the range the head was trained for
DINOV2_MAX_DEPTH = {"nyu": 10.0, "kitti": 80.0}
# The weights of the BEiT releases were trained with layer-norm eps 1e-6; the Intel configs say
# 1e-12 (transformers' default), which moves the output by ~3e-4 of its range.
ORIGINAL_BEIT_EPS = 1e-6
CONFIG = "config.json"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
OPTIONAL_FILES = ("preprocessor_config.json",)


class ModelNotFound(UsageError):
    pass


def is_official(spec: str) -> bool:
    """Whether `spec` names one of the isl-org releases on the hub (an alias or an Intel/dpt-* id):
    (and the Depth Anything and DINOv2-DPT ones): those run with the original code's preprocessing
    and numerics, whatever their files say. A local
    folder of that name is not: `resolve` reads the folder, so its own files decide."""
    if spec not in ALIASES and spec not in ALIASES.values():
        return False
    try:
        return not Path(spec).expanduser().exists()
    except OSError:
        return True


def with_original_numerics(config, spec: str = ""):
    """An official model's config as the original code ran it: BEiT's layer-norm eps 1e-6; the
    dinov2 depther's depth range (10 m for the NYU heads, 80 m for KITTI's) for DINOv2-DPT."""
    from dataclasses import replace

    if config.family == "beit":
        return config.replace(backbone_config=replace(config.backbone_config, layer_norm_eps=ORIGINAL_BEIT_EPS))
    if config.family == "dinov2" and not config.is_depth_anything:
        repo = ALIASES.get(spec, spec)
        depth = next((m for name, m in DINOV2_MAX_DEPTH.items() if repo.endswith(f"-{name}")), None)
        return config.replace(max_depth=depth) if depth else config
    return config


def resolve(spec: str) -> Path:
    """Return the local folder holding `spec`'s config.json and weights.

    `spec` is a folder, an alias (large, hybrid, large-ade, beit-large-512, ...) or a hub id ("org/name"). Hub ids are
    read from the huggingface_hub cache, downloading only when the hub is reachable and allowed.
    """
    path = Path(spec).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long, a loop, ...: the spec cannot be a folder or an id
        raise ModelNotFound(f"{shown(spec)}: {os_reason(exc)}") from None
    if exists:
        if not path.is_dir():
            raise ModelNotFound(f"{shown(spec)}: a model must be a folder with {CONFIG} and weights, not a file")
        if not (path / CONFIG).is_file():
            raise ModelNotFound(f"{shown(spec)}: not a model folder (no {CONFIG})")
        return path
    repo_id = ALIASES.get(spec, spec)
    if repo_id.count("/") != 1 or spec.startswith((".", "/", "~")):
        known = ", ".join(ALIASES)
        raise ModelNotFound(f"{shown(spec)}: no such folder, and not a hub id (org/name) or an alias ({known})")
    return _from_hub(repo_id)


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # our one-line error says it all; no connection noise

    # read per call, so that a changed environment (tests, long-lived callers) is honoured
    cache = os.environ.get("HF_HUB_CACHE") or None

    def download(name: str) -> str:
        return hf_hub_download(repo_id, name, cache_dir=cache)

    try:
        config = Path(download(CONFIG))
        for name in HUB_FILES:
            try:
                download(name)
                break
            except EntryNotFoundError:
                continue
        else:
            raise ModelNotFound(f"{repo_id}: the hub repository has no {' or '.join(HUB_FILES)}")
        for name in OPTIONAL_FILES:
            try:
                download(name)
            except Exception:  # optional: a folder without it uses the defaults
                pass
    except RepositoryNotFoundError:
        raise ModelNotFound(f"{repo_id}: no such model on the hub") from None
    except ModelNotFound:
        raise
    except Exception as exc:  # offline mode, no network, timeouts: all mean "not available here"
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else f"the hub is unreachable ({type(exc).__name__})"
        raise ModelNotFound(
            f"{repo_id}: not in the local Hugging Face cache and {why}; "
            f"download it where the hub is reachable and pass its folder, e.g. --model ./dpt-large"
        ) from None
    return config.parent
