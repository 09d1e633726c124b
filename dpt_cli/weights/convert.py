"""Convert an original isl-org checkpoint (.pt: DPT 2021, MiDaS v3.1) into a transformers-layout folder.

The folder appears complete or not at all: everything is written into a hidden sibling folder that
is renamed into place at the end, and removed on any failure or interruption. Where the folder may
go, and what --force may replace, is convert_target's business.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import __version__, ade20k
from ..config import SEGMENTATION, DPTConfig
from ..errors import DPTError, UsageError
from ..text import os_reason, shown
from .convert_target import check_destination, remove_stale, write_atomically
from .files import load_pickled
from . import depth_anything_layout as depth_anything
from . import midas31_layout as midas31
from .isl_org_layout import SKIPPED, NotADPTCheckpoint, detect_config, table
from .keymap import KeyMismatch
from ..model.summary import backbone_text
from .load import load_model, model_from_state, save_model

Progress = Callable[[str, int, int], None]  # (stage, done_bytes, total_bytes)


@dataclass(frozen=True)
class Variant:
    name: str
    task: str
    size: tuple[int, int]  # network input (height, width) before keep-aspect scaling
    depth_scale: float | None = None
    depth_shift: float | None = None
    description: str = ""
    keep_aspect: bool = True  # the original scripts' resize: keep the aspect ratio, or squash to `size`


VARIANTS = {
    v.name: v
    for v in (
        Variant("relative", "depth", (384, 384), description="MiDaS relative depth (dpt_large-midas, dpt_hybrid-midas, *_384)"),
        Variant("kitti", "depth", (352, 1216), 0.00006016, 0.00579, "metric depth in metres, KITTI (dpt_hybrid_kitti)"),
        Variant("nyu", "depth", (480, 640), 0.000305, 0.1378, "metric depth in metres, NYUv2 (dpt_hybrid_nyu)"),
        Variant("ade20k", SEGMENTATION, (480, 480), description="ADE20K segmentation, 150 classes (*-ade20k)"),
    )
}
RELEASE_HASH = re.compile(r"-([0-9a-f]{8})\.pt$")


class ConversionError(DPTError):
    pass


@dataclass
class Report:
    sha256: str = ""
    verified_hash: bool = False
    variant: str = ""
    skipped: list[str] = field(default_factory=list)
    config: DPTConfig | None = None


def sha256_of(path: Path, progress: Progress | None = None, stop: threading.Event | None = None) -> str:
    digest, total, done = hashlib.sha256(), path.stat().st_size, 0
    buffer = bytearray(8 << 20)
    view = memoryview(buffer)
    with open(path, "rb") as f:
        while n := f.readinto(buffer):
            if stop is not None and stop.is_set():
                break
            digest.update(view[:n])  # releases the GIL: hashing overlaps the conversion
            done += n
            if progress:
                progress("hashing", done, total)
    return digest.hexdigest()


def read_original(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of an original checkpoint, unwrapping {"model": ..., "optimizer": ...}."""
    raw = load_pickled(path)
    if isinstance(raw, dict) and "optimizer" in raw and isinstance(raw.get("model"), dict):
        raw = raw["model"]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise NotADPTCheckpoint(f"{path}: not a checkpoint: expected a dict of tensors")
    return raw


def choose_variant(requested: str, path: Path, config: DPTConfig) -> Variant:
    if requested == "auto":
        name = path.name.lower()
        if config.task == SEGMENTATION:
            requested = "ade20k"
        else:
            requested = "kitti" if "kitti" in name else "nyu" if "nyu" in name else "relative"
    if requested not in VARIANTS:
        raise UsageError(f"unknown variant {requested!r}; presets: auto, {', '.join(VARIANTS)} (MiDaS v3.1 files: {', '.join(midas31.RELEASES)})")
    variant = VARIANTS[requested]
    if variant.task != config.task:
        raise UsageError(f"{path.name}: --variant {requested} is for {variant.task} models, but the file holds a {config.task} model")
    return variant


def preprocessor_config(variant: Variant, config: DPTConfig | None = None) -> dict:
    """The original scripts' preprocessing, in transformers' DPTImageProcessor vocabulary (Depth
    Anything: as transformers' converter writes it; dpt runs a converted folder with the original's
    'lower bound' resize, see `pipeline.preprocess.original`)."""
    h, w = variant.size
    if config is not None and config.is_depth_anything:
        return {"image_processor_type": "DPTImageProcessor", "do_resize": True, "size": {"height": h, "width": w},
                "keep_aspect_ratio": True, "ensure_multiple_of": config.backbone_config.patch_size, "resample": 3,
                "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_pad": False}
    return {
        "image_processor_type": "DPTImageProcessor",
        "do_resize": True,
        "size": {"height": h, "width": w},
        "keep_aspect_ratio": variant.keep_aspect,
        "ensure_multiple_of": 32,
        "resample": 3,  # bicubic
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_pad": False,
        "dpt_resize_method": "minimal",
    }


def convert(
    src: str | Path,
    dst: str | Path,
    variant: str = "auto",
    dtype: torch.dtype = torch.float32,
    verify: bool = True,
    force: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Convert `src` (an isl-org .pt) into the folder `dst`; see the module docstring."""
    src, dst = Path(src), Path(dst)
    try:
        found = src.is_file()
    except OSError as exc:  # a name too long, ...
        raise UsageError(f"{shown(src)}: {os_reason(exc)}") from None
    if not found:
        raise UsageError(f"{shown(src)}: no such file")
    # Before the slow read: a refused destination costs nothing and leaves the disk as it was.
    remove_stale(check_destination(src, dst, force))
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        hashing = pool.submit(sha256_of, src, progress, stop)
        return _convert(src, dst, variant, dtype, verify, force, progress, hashing)
    finally:
        # Not `with pool`: its exit waits for the thread; on an interrupt the thread sees `stop`
        # within one chunk, and nothing here needs to wait for that.
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _detect(state: dict, src: Path, variant: str):
    """(config, variant, key table, skipped-key patterns) of an original file, from its keys and shapes."""
    family = midas31.family_of(state)
    try:
        if depth_anything.is_depth_anything(state):
            return _detect_depth_anything(state, src, variant)
        if family is None:
            config = detect_config(state, ade20k.id2label())
            chosen = choose_variant(variant, src, config)
            if chosen.depth_scale is not None:
                config = config.replace(depth_scale=chosen.depth_scale, depth_shift=chosen.depth_shift, invert_depth=True)
            return config, chosen, table(config.is_hybrid, config.task), SKIPPED
        release = midas31.choose_release(family, src.name, "auto" if variant == "relative" else variant)
        config = midas31.detect_config(state, family, release)
    except UsageError:
        raise
    except DPTError as exc:
        raise NotADPTCheckpoint(f"{src}: {exc}") from None
    except (IndexError, ValueError, ZeroDivisionError) as exc:  # shapes that no release has
        raise NotADPTCheckpoint(f"{src}: not a checkpoint layout dpt knows: {exc}") from None
    side = config.backbone_config.image_size
    name = release.name if release else f"{family} (not a release name: read from the weights)"
    chosen = Variant(name, "depth", side, description=f"MiDaS v3.1 relative depth ({'dpt_' + name if release else family})",
                     keep_aspect=family == "beit")
    return config, chosen, midas31.TABLES[family], midas31.SKIPPED


def _detect_depth_anything(state: dict, src: Path, variant: str):
    chosen, letter = depth_anything.choose_variant(src.name, variant)
    config = depth_anything.detect_config(state, chosen, letter)
    side = config.backbone_config.image_size
    what = f"metric depth in metres, up to {chosen.max_depth:g}" if chosen.max_depth else "relative inverse depth"
    described = Variant(chosen.name, "depth", side, description=f"Depth Anything V{chosen.version}, {what}", keep_aspect=True)
    return config, described, depth_anything.TABLE, ()


def _convert(src: Path, dst: Path, variant: str, dtype, verify: bool, force: bool, progress, hashing: Future) -> Report:
    report = Report()
    state = read_original(src)
    config, chosen, key_table, skip = _detect(state, src, variant)
    report.variant, report.config = chosen.name, config
    report.skipped = sorted(k for k in state if any(re.match(s, k) for s in skip))
    try:
        model = model_from_state(config, state, key_table, skip=skip)
    except KeyMismatch as exc:
        raise NotADPTCheckpoint(f"{src}: {exc}") from None

    def check_hash() -> None:
        report.sha256 = hashing.result()
        release = RELEASE_HASH.search(src.name)
        if release and verify:
            if not report.sha256.startswith(release.group(1)):
                raise ConversionError(
                    f"{src.name}: SHA-256 {report.sha256} does not start with the release hash {release.group(1)} "
                    "in its name: the file is corrupt or not that release (--no-verify to convert anyway)"
                )
            report.verified_hash = True

    def write(tmp: Path) -> None:
        _write_weights(tmp, model, chosen, src, dtype, progress)
        check_hash()  # hashing ran alongside; a mismatch stops before anything is renamed
        _write_provenance(tmp, chosen, src, report, dtype)
        load_model(tmp)  # the folder must load strictly: config, keys and shapes agree

    write_atomically(src, dst, force, write)
    return report


def _write_weights(tmp: Path, model, variant: Variant, src: Path, dtype, progress) -> None:
    meta = {"source": src.name, "variant": variant.name}
    save_model(model, tmp, metadata=meta, dtype=dtype, progress=(lambda d, t: progress("writing", d, t)) if progress else None)
    (tmp / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(variant, model.config), indent=2) + "\n")


def _write_provenance(tmp: Path, variant: Variant, src: Path, report: Report, dtype) -> None:
    (tmp / "README.md").write_text(_readme(src, variant, report, dtype))
    provenance = {"source": src.name, "source_sha256": report.sha256, "release_hash_verified": report.verified_hash,
                  "variant": variant.name, "dtype": str(dtype).removeprefix("torch."), "dpt_version": __version__}
    (tmp / "conversion.json").write_text(json.dumps(provenance, indent=2) + "\n")


def _origin(c: DPTConfig) -> str:
    if c.is_depth_anything:
        return "DepthAnything/Depth-Anything-V2 or LiheYoung/Depth-Anything (licence per model size: see the release)"
    return f"{'isl-org/MiDaS v3.1' if c.family in ('beit', 'swinv2') else 'isl-org/DPT'} (MIT licence)"


def _readme(src: Path, variant: Variant, report: Report, dtype: torch.dtype) -> str:
    c = report.config
    output = (
        "depth in metres: 1 / max(depth_scale * x + depth_shift, 1e-8)"
        if variant.depth_scale is not None
        else f"depth in metres (0 to {c.max_depth:g})"
        if c.is_depth_anything and c.is_metric
        else "logits over the 150 ADE20K classes (0-based id2label)"
        if c.task == SEGMENTATION
        else "inverse relative depth (larger is nearer, no unit)"
    )
    return (
        f"# {src.stem} (converted by dpt)\n\n"
        f"- source file: `{src.name}`\n"
        f"- source SHA-256: `{report.sha256}`"
        f"{' (matches the release hash in the name)' if report.verified_hash else ''}\n"
        f"- variant: {variant.name} ({variant.description})\n"
        f"- architecture: {backbone_text(c)}\n"
        f"- output: {output}\n"
        f"- network input: {variant.size[0]}x{variant.size[1]} (HxW), {'keep aspect, multiples of 32' if variant.keep_aspect else 'squashed to that size'}, "
        "bicubic, mean/std 0.5\n"
        f"- dtype: {str(dtype).removeprefix('torch.')}\n\n"
        "Loads with `dpt depth --model DIR` / `dpt segment --model DIR` and with transformers'\n"
        f"{'`DepthAnythingForDepthEstimation`' if c.is_depth_anything else '`DPTForDepthEstimation` / `DPTForSemanticSegmentation`'}.from_pretrained(DIR).\n"
        f"Original weights: {_origin(c)}.\n"
    )
