"""A human-readable description of a model's architecture."""

from __future__ import annotations

from ..config import DEPTH, DPTConfig
from .dpt import DPT


FAMILIES = {"vit": "DPT (ViT)", "hybrid": "DPT (ViT-Hybrid)", "beit": "MiDaS v3.1 (BEiT)", "swinv2": "MiDaS v3.1 (Swin-V2)",
            "dinov2": "DPT (DINOv2)"}


def family_text(c: DPTConfig) -> str:
    if c.is_depth_anything:
        return f"Depth Anything V{c.depth_anything_version} ({'metric' if c.is_metric else 'relative'})"
    return FAMILIES[c.family]


def backbone_text(c: DPTConfig) -> str:
    """One line naming the backbone and its sizes."""
    b = c.backbone_config
    if c.family == "beit":
        size = "x".join(map(str, b.image_size))
        return f"BEiT/{b.patch_size} ({b.num_hidden_layers} layers, width {b.hidden_size}, {b.num_attention_heads} heads, trained at {size})"
    if c.family == "dinov2":
        size = "x".join(map(str, b.image_size))
        mlp = "SwiGLU MLP, " if b.use_swiglu_ffn else ""
        return f"DINOv2 ViT/{b.patch_size} ({b.num_hidden_layers} layers, width {b.hidden_size}, {b.num_attention_heads} heads, {mlp}trained at {size})"
    if c.family == "swinv2":
        size = "x".join(map(str, b.image_size))
        return f"Swin-V2 (depths {'-'.join(map(str, b.depths))}, widths {'-'.join(map(str, b.stage_widths))}, window {b.window_size}, runs at {size})"
    if c.is_hybrid:
        return f"ViT-Hybrid (BiT ResNet {'-'.join(map(str, b.depths))} + ViT, {c.num_hidden_layers} layers, width {c.hidden_size})"
    return f"ViT/{c.patch_size} ({c.num_hidden_layers} layers, width {c.hidden_size}, {c.num_attention_heads} heads)"


def describe(model: DPT) -> dict[str, str]:
    c = model.config
    arch = backbone_text(c)
    if c.task == DEPTH:
        output = "depth in metres" if c.is_metric else "inverse relative depth (larger is nearer)"
    else:
        output = f"logits over {c.num_labels} classes"
    if c.task == DEPTH and c.max_depth is not None and c.is_metric:
        output += f", at most {c.max_depth:g} m"
    n = sum(p.numel() for p in model.parameters())
    dtype = next(model.parameters()).dtype
    return {
        "task": c.task,
        "family": family_text(c),
        "backbone": arch,
        "readout": "none (Swin-V2 stages are feature maps)" if c.family == "swinv2" else c.readout_type,
        **({"max depth": f"{c.max_depth:g} m"} if c.task == DEPTH and c.max_depth is not None and c.is_metric else {}),
        "output": output,
        "parameters": f"{n:,}",
        "dtype": str(dtype).removeprefix("torch."),
    }
