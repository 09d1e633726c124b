"""A human-readable description of a model's architecture."""

from __future__ import annotations

from ..config import DEPTH
from .dpt import DPT


def describe(model: DPT) -> dict[str, str]:
    c = model.config
    if c.is_hybrid:
        arch = f"ViT-Hybrid (BiT ResNet {'-'.join(map(str, c.backbone_config.depths))} + ViT, {c.num_hidden_layers} layers, width {c.hidden_size})"
    else:
        arch = f"ViT/{c.patch_size} ({c.num_hidden_layers} layers, width {c.hidden_size}, {c.num_attention_heads} heads)"
    if c.task == DEPTH:
        output = "depth in metres" if c.is_metric else "inverse relative depth (larger is nearer)"
    else:
        output = f"logits over {c.num_labels} classes"
    n = sum(p.numel() for p in model.parameters())
    dtype = next(model.parameters()).dtype
    return {
        "task": c.task,
        "backbone": arch,
        "readout": c.readout_type,
        "output": output,
        "parameters": f"{n:,}",
        "dtype": str(dtype).removeprefix("torch."),
    }
