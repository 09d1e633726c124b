"""Fake original isl-org checkpoints from the key manifests, and an independent rename to transformers.

The manifests (tests/data, copied from ../shared/reference) list every key and shape of each
release layout. The rename below follows huggingface_layout.md's "Original -> transformers
renames" directly, so that the converter's own table is checked against a second source.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
LAYOUTS = ("dpt_large-midas", "dpt_hybrid-midas", "dpt_large-ade20k", "dpt_hybrid-ade20k")


def manifest(layout: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"isl_org_keys_{layout}.json").read_text())


def fake_checkpoint(layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with every key and shape of `layout`; scaled so activations stay finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in manifest(layout).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) <= 1 or key.endswith(("cls_token", "pos_embed")):
            state[key] = torch.randn(shape, generator=g) * 0.1
        else:
            fan_in = max(1, torch.Size(shape[1:]).numel())
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


_RENAMES = [
    (r"pretrained\.model\.cls_token", "dpt.embeddings.cls_token"),
    (r"pretrained\.model\.pos_embed", "dpt.embeddings.position_embeddings"),
    (r"pretrained\.model\.patch_embed\.backbone\.stem\.conv\.", "dpt.embeddings.backbone.bit.embedder.convolution."),
    (r"pretrained\.model\.patch_embed\.backbone\.stem\.norm\.", "dpt.embeddings.backbone.bit.embedder.norm."),
    (r"pretrained\.model\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.", r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2."),
    (r"pretrained\.model\.blocks\.(\d+)\.attn\.proj\.", r"dpt.encoder.layer.\1.attention.output.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.mlp\.fc1\.", r"dpt.encoder.layer.\1.intermediate.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.mlp\.fc2\.", r"dpt.encoder.layer.\1.output.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.norm1\.", r"dpt.encoder.layer.\1.layernorm_before."),
    (r"pretrained\.model\.blocks\.(\d+)\.norm2\.", r"dpt.encoder.layer.\1.layernorm_after."),
    (r"pretrained\.model\.norm\.", "dpt.layernorm."),
    (r"pretrained\.act_postprocess(\d)\.0\.project\.0\.", lambda m: f"neck.reassemble_stage.readout_projects.{int(m[1]) - 1}.0."),
    (r"pretrained\.act_postprocess(\d)\.3\.", lambda m: f"neck.reassemble_stage.layers.{int(m[1]) - 1}.projection."),
    (r"pretrained\.act_postprocess(\d)\.4\.", lambda m: f"neck.reassemble_stage.layers.{int(m[1]) - 1}.resize."),
    (r"scratch\.layer(\d)_rn\.", lambda m: f"neck.convs.{int(m[1]) - 1}."),
    (r"scratch\.refinenet(\d)\.", lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}."),
    (r"scratch\.output_conv\.", "head.head."),
    (r"auxlayer\.", "auxiliary_head.head."),
]
_INNER = [("resConfUnit", "residual_layer"), (".conv1.", ".convolution1."), (".conv2.", ".convolution2."),
          (".bn1.", ".batch_norm1."), (".bn2.", ".batch_norm2."), (".out_conv.", ".projection.")]


def expected_transformers_state(original: dict[str, torch.Tensor], hybrid: bool) -> dict[str, torch.Tensor]:
    """What a correct conversion must contain, derived from the documented renames."""
    out = {}
    for key, tensor in original.items():
        if key.startswith("pretrained.model.head."):
            continue
        m = re.match(r"pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.(\w+)$", key)
        if m:
            q, k, v = tensor.chunk(3, dim=0)
            for part, t in zip(("query", "key", "value"), (q, k, v)):
                out[f"dpt.encoder.layer.{m[1]}.attention.attention.{part}.{m[2]}"] = t
            continue
        if key.startswith("pretrained.model.patch_embed.proj."):
            new = key.replace("pretrained.model.patch_embed.proj.", "dpt.embeddings.projection." if hybrid else "dpt.embeddings.patch_embeddings.projection.")
        else:
            new = key
            for pattern, repl in _RENAMES:
                new, n = re.subn("^" + pattern, repl, new)
                if n:
                    break
            if new.startswith("neck.fusion_stage"):
                for a, b in _INNER:
                    new = new.replace(a, b)
        out[new] = tensor
    return out
