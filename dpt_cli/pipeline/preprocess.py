"""Faithful preprocessing: each family's original resize and normalisation.

DPT and MiDaS v3.1 (isl-org): keep the aspect ratio and scale as little as possible toward the
network size ("minimal"), round each side to a multiple of 32 with round-half-to-even (`np.round`),
resize with bicubic a = -0.75 and no antialiasing (OpenCV's INTER_CUBIC, see `resample`) on float
0..1 pixels, then (x - mean) / std. Depth Anything: the same resize with "lower_bound" (the larger
scale, no side below the network size) to multiples of 14, ImageNet mean/std. DINOv2-DPT: no resize,
normalised, then zero-padded about the centre to multiples of 14.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SEGMENTATION, DPTConfig
from ..errors import DPTError
from ..limits import MAX_NETWORK_PIXELS, MAX_NETWORK_SIDE
from ..text import shown
from .images import UNIT, to_float
from .resample import resize

MULTIPLE = 32
MAX_SIDE = MAX_NETWORK_SIDE  # checked per photo before any allocation (see dpt_cli.limits)
BICUBIC, BILINEAR = 3, 2  # PIL resample codes, as preprocessor_config.json stores them


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MINIMAL, LOWER_BOUND, NO_RESIZE = "minimal", "lower_bound", "none"
# How the network output goes back to the photo's shape: bicubic (DPT, MiDaS), bilinear with
# align_corners (Depth Anything V2), bilinear (V1; the dinov2 depther, to the padded size first)
CUBIC, CORNERS, LINEAR = "cubic", "corners", "linear"


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a network input, and how the output goes back to the image's shape."""

    size: tuple[int, int]  # network (height, width) the scaling aims at
    keep_aspect: bool = True
    multiple: int = MULTIPLE
    resample: int = BICUBIC
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    method: str = MINIMAL  # MINIMAL, LOWER_BOUND, or NO_RESIZE (then the input is centre-padded)
    back: str = CUBIC

    @property
    def pads(self) -> bool:
        return self.method == NO_RESIZE

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of a photo -> (h, w) of its network input; both multiples of `multiple`."""
        if self.pads:
            return -(-height // self.multiple) * self.multiple, -(-width // self.multiple) * self.multiple
        net_h, net_w = self.size
        scale_h, scale_w = net_h / height, net_w / width
        if self.keep_aspect and self.method == LOWER_BOUND:
            scale_h = scale_w = max(scale_h, scale_w)
        elif self.keep_aspect:
            # "minimal": the scale closer to 1 wins for both sides
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        return self._round(scale_h * height, net_h), self._round(scale_w * width, net_w)

    def _round(self, x: float, least: int) -> int:
        # np.round is round-half-to-even, as in the original; never below one multiple (the
        # original could produce 0 for extreme aspect ratios and crash). "lower_bound" rounds up
        # instead when rounding would go below the network size.
        y = int(np.round(x / self.multiple)) * self.multiple
        if self.method == LOWER_BOUND and y < least:
            y = int(np.ceil(x / self.multiple)) * self.multiple
        return max(self.multiple, y)

    def check(self, height: int, width: int, name: str = "image") -> tuple[int, int]:
        """The network size of a photo, or DPTError (naming `name`) when a side would exceed
        MAX_SIDE: keep-aspect scaling of a very elongated photo can ask for 384x128000."""
        h, w = self.network_size(height, width)
        if max(h, w) > MAX_SIDE or h * w > MAX_NETWORK_PIXELS:
            limit = f"{MAX_SIDE} limit" if max(h, w) > MAX_SIDE else f"limit of {MAX_NETWORK_PIXELS:,} pixels"
            advice = "resize the photo (this model runs photos at their own size)" if self.pads else "use --no-keep-aspect or a smaller --size"
            raise DPTError(f"{name}: its {height}x{width} shape needs a {h}x{w} network input, over the {limit}; {advice}")
        return h, w

    def __call__(self, pixels: np.ndarray | torch.Tensor, name: str = "image") -> torch.Tensor:
        """(H, W, 3) RGB pixels -> normalised (3, h, w) float32 network input, on their device.

        pixels: uint8 0..255 or float32 0..1, a numpy array (CPU) or a tensor on any device; every
        device computes the same float32 values (see `images.UNIT` and `resample`).
        """
        h, w = self.check(*pixels.shape[:2], name=name)
        x = _unit(pixels).permute(2, 0, 1)
        if (h, w) != tuple(x.shape[-2:]) and not self.pads:
            x = resize(x, (h, w), cubic=self.resample == BICUBIC)
        mean, std = _constants(self.mean, self.std, x.device)
        x = (x - mean) / std
        if self.pads:  # zeros (the mean colour) about the centre, the odd pixel bottom/right
            top, left = padding(tuple(x.shape[-2:]), (h, w))
            x = F.pad(x, (left, w - x.shape[-1] - left, top, h - x.shape[-2] - top))
        return x


def padding(size: tuple[int, int], padded: tuple[int, int]) -> tuple[int, int]:
    """(top, left) offset of a (H, W) photo inside its centre-padded (Hp, Wp) network input."""
    return (padded[0] - size[0]) // 2, (padded[1] - size[1]) // 2


def _unit(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Pixels as float32 0..1 (H, W, 3): 8-bit values through the exact u / 255 table."""
    if isinstance(pixels, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(to_float(pixels), dtype=np.float32))
    if pixels.dtype == torch.uint8:
        return _table(pixels.device)[pixels.long()]
    return pixels.to(torch.float32)


@lru_cache(maxsize=16)
def _table(device: torch.device) -> torch.Tensor:
    """images.UNIT on `device`, uploaded once."""
    return torch.from_numpy(UNIT.copy()).to(device)


@lru_cache(maxsize=16)
def _constants(mean: tuple, std: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 1, 1) mean and std on `device`, made once: a tensor made from host data on a GPU
    waits for all queued work, and this runs per photo. Tensors, not Python scalars: a GPU
    divides by a scalar as a multiply by its reciprocal, which rounds differently."""
    return torch.tensor(mean).view(3, 1, 1).to(device), torch.tensor(std).view(3, 1, 1).to(device)



def original(task: str, config: DPTConfig | None = None) -> Preprocess:
    """The original scripts' settings: DPT 384 for relative depth, 480 for ADE20K segmentation;
    MiDaS v3.1 at the backbone's trained size, keeping the aspect ratio for BEiT and squashing to
    the square for Swin-V2 (the only size the original runs it at); Depth Anything at 518 'lower
    bound', multiples of 14, ImageNet statistics, bilinear back (V2 with align_corners; V1 without);
    DINOv2-DPT unresized, centre-padded to multiples of 14."""
    family = config.family if config is not None else "vit"
    if family in ("beit", "swinv2"):
        return Preprocess(size=tuple(config.backbone_config.image_size), keep_aspect=family == "beit")
    if family == "dinov2":
        b = config.backbone_config
        if not config.is_depth_anything:
            return Preprocess(size=b.image_size, multiple=b.patch_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, method=NO_RESIZE, back=LINEAR)
        return Preprocess(size=b.image_size, multiple=b.patch_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          method=LOWER_BOUND, back=LINEAR if config.depth_anything_version == 1 else CORNERS)
    n = 480 if task == SEGMENTATION else 384
    return Preprocess(size=(n, n))


def from_folder(folder: Path, task: str, config: DPTConfig | None = None) -> Preprocess:
    """A model folder's preprocessor_config.json (transformers' DPTImageProcessor fields).

    Checked before use: sizes within 1..MAX_SIDE, three finite means and three finite non-zero
    standard deviations; anything else is one DPTError naming the file and the field.
    """
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return original(task, config)
    try:
        if path.stat().st_size > 1 << 20:
            raise ValueError("over 1 MB")
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
        normalize = cfg.get("do_normalize", True)
        family = original(task, config)  # the multiple, and how the output goes back
        # statistics apply to pixels x 255 x rescale_factor (or x 255 unrescaled); ours are 0..1
        unit = 255 * (_rescale(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) is not False else 1.0)
        mean = _triple(cfg.get("image_mean", 0.5), "image_mean") if normalize else (0.0,) * 3
        std = _triple(cfg.get("image_std", 0.5), "image_std", nonzero=True) if normalize else (unit,) * 3
        pads = family.multiple != MULTIPLE and not cfg.get("do_resize", True)  # DINOv2: runs unresized, padded
        return replace(
            family,
            size=_size(cfg.get("size", 384)) if not pads else family.size,
            keep_aspect=bool(cfg.get("keep_aspect_ratio", False)),
            # the network needs multiples of 32 (DINOv2: of its patch) whatever the file says
            resample=BICUBIC if cfg.get("resample", BICUBIC) == BICUBIC else BILINEAR,
            mean=tuple(m / unit for m in mean),
            std=tuple(d / unit for d in std),
            method=NO_RESIZE if pads else MINIMAL,
        )
    except (ValueError, KeyError, TypeError, IndexError, OSError, RecursionError) as exc:
        raise DPTError(f"{shown(path)}: unusable preprocessor config ({shown(exc)})") from None


def _rescale(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 1e-6 <= value <= 1e6:
        raise ValueError(f"field 'rescale_factor' must be a positive finite number, got {value!r}"[:200])
    return float(value)


def _size(size) -> tuple[int, int]:
    if isinstance(size, dict):
        size = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    elif not isinstance(size, (list, tuple)):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in size):
        raise ValueError(f"field 'size' must be 1..{MAX_SIDE} pixels a side, got {size!r}"[:200])
    return int(size[0]), int(size[1])


def _triple(value, name: str, nonzero: bool = False) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else value
    ok = isinstance(values, (list, tuple)) and len(values) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v != 0 or not nonzero) for v in values
    )
    if not ok:
        raise ValueError(f"field '{name}' must be 3 finite numbers{', none zero' if nonzero else ''}, got {value!r}"[:200])
    return tuple(float(v) for v in values)


def with_options(p: Preprocess, size: tuple[int, int] | None, keep_aspect: bool | None) -> Preprocess:
    """Apply --size and --no-keep-aspect."""
    if size is not None:
        p = replace(p, size=size)
    if keep_aspect is not None:
        p = replace(p, keep_aspect=keep_aspect)
    return p
