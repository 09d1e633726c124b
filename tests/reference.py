"""Reference models from transformers (test-only) and helpers to compare against them."""

from __future__ import annotations

import torch
from transformers import DPTConfig as HFConfig
from transformers import DPTForDepthEstimation, DPTForSemanticSegmentation

TINY_VIT = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=128,
    image_size=64,
    patch_size=16,
    backbone_out_indices=[0, 1, 2, 3],
    neck_hidden_sizes=[16, 32, 64, 64],
    reassemble_factors=[4, 2, 1, 0.5],
    fusion_hidden_size=32,
    layer_norm_eps=1e-6,
)
# DPT-Large's structure (24 blocks, taps 5/11/17/23, 16 heads) at reduced widths.
LARGE_SHAPED = dict(
    TINY_VIT,
    hidden_size=128,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=256,
    backbone_out_indices=[5, 11, 17, 23],
    neck_hidden_sizes=[32, 64, 128, 128],
    layer_norm_eps=1e-12,
)
TINY_BIT = dict(
    depths=[1, 1, 2],
    hidden_sizes=[32, 64, 128, 256],
    embedding_size=16,
    num_groups=8,
    global_padding="SAME",
    layer_type="bottleneck",
    embedding_dynamic_padding=True,
    out_features=["stage1", "stage2", "stage3"],
)
HYBRID = dict(
    TINY_VIT,
    is_hybrid=True,
    backbone_config=TINY_BIT,
    backbone_featmap_shape=[1, 128, 4, 4],
    neck_hidden_sizes=[32, 64, 64, 64],
    reassemble_factors=[1, 1, 1, 0.5],
    backbone_out_indices=[0, 1, 2, 3],
)
SEG = dict(use_batch_norm_in_fusion_residual=True, num_labels=7, task="segmentation")
# MiDaS v3.1 families (DPT with a backbone_config), shrunk: BEiT trained at 64 (a 4x4 token grid),
# Swin-V2 at 64 with 4x4 windows (stage grids 16, 8, 4, 2: shifted windows in stages 0 and 1).
TINY_BEIT = dict(
    backbone_config=dict(
        model_type="beit", image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, use_relative_position_bias=True, use_absolute_position_embeddings=False,
        reshape_hidden_states=False, out_features=["stage1", "stage2", "stage3", "stage4"], layer_scale_init_value=0.1,
        use_mean_pooling=True, layer_norm_eps=1e-6,
    ),
    neck_hidden_sizes=[16, 32, 64, 64],
    fusion_hidden_size=32,
)
TINY_SWINV2 = dict(
    backbone_config=dict(
        model_type="swinv2", image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4],
        window_size=4, pretrained_window_sizes=[3, 3, 3, 2], out_features=["stage1", "stage2", "stage3", "stage4"],
    ),
    neck_hidden_sizes=[16, 32, 64, 128],
    fusion_hidden_size=32,
)

VARIANTS = {
    "large_shaped": LARGE_SHAPED,
    "readout_add": dict(TINY_VIT, readout_type="add"),
    "readout_ignore": dict(TINY_VIT, readout_type="ignore"),
    "projection": dict(TINY_VIT, add_projection=True, fusion_hidden_size=256),
    "hybrid": HYBRID,
    "seg": dict(TINY_VIT, **SEG),
    "hybrid_seg": dict(HYBRID, **SEG),
    "beit": TINY_BEIT,
    "swinv2": TINY_SWINV2,
    "dinov2_dpt": None,  # filled below
    "depth_anything": None,
    "depth_anything_metric": None,
}
# DINOv2 families, shrunk: trained at 56 (a 4x4 grid of 14-pixel patches); taps spread through the
# blocks as V2's are (tapping the last four is V1's mark, which changes the post-processing)
TINY_DINOV2 = dict(
    model_type="dinov2", image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=6, num_attention_heads=2,
    out_features=["stage1", "stage3", "stage5", "stage6"], reshape_hidden_states=False,
)
VARIANTS["dinov2_dpt"] = dict(  # facebook/dpt-dinov2-*: projection head, no fusion bias, final norm off
    backbone_config=dict(TINY_DINOV2, apply_layernorm=False), neck_hidden_sizes=[8, 16, 32, 32],
    fusion_hidden_size=256, add_projection=True, use_bias_in_fusion_residual=False,
)
TINY_DEPTH_ANYTHING = dict(
    kind="depth_anything", backbone_config=dict(TINY_DINOV2, apply_layernorm=True), reassemble_hidden_size=32,
    neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
)
VARIANTS["depth_anything"] = TINY_DEPTH_ANYTHING
VARIANTS["depth_anything_metric"] = dict(TINY_DEPTH_ANYTHING, depth_estimation_type="metric", max_depth=20)
# Built on demand only (not part of every parity sweep): an ADE20K-labelled segmentation model.
ADE = dict(TINY_VIT, use_batch_norm_in_fusion_residual=True, task="segmentation")


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, BatchNorm statistics included (zero-initialised tensors hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = 0.5 if p.ndim <= 1 else (1.0 / max(1, p[0].numel())) ** 0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model.eval()


def make_reference(spec: dict, seed: int = 0):
    spec = dict(spec)
    task = spec.pop("task", "depth")
    if spec.pop("kind", None) == "depth_anything":
        from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

        return randomize(DepthAnythingForDepthEstimation(DepthAnythingConfig(**spec)), seed)
    cls = DPTForSemanticSegmentation if task == "segmentation" else DPTForDepthEstimation
    return randomize(cls(HFConfig(**spec)), seed)


def reference_output(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(pixel_values=x)
    return out.logits if isinstance(model, DPTForSemanticSegmentation) else out.predicted_depth


def reference_any_size(model, x: torch.Tensor) -> torch.Tensor:
    """transformers' own modules, composed so that non-square inputs work.

    DPTForDepthEstimation.forward reshapes the token grid as a square and its hybrid embedding
    refuses any size but image_size; the modules themselves take the grid explicitly.
    """
    cfg = model.config
    h, w = x.shape[-2] // cfg.patch_size, x.shape[-1] // cfg.patch_size
    with torch.no_grad():
        if cfg.is_hybrid:
            emb = model.dpt.embeddings(x, interpolate_pos_encoding=True)
        else:
            emb = model.dpt.embeddings(x)
        hidden = emb.last_hidden_states
        taps = list(cfg.backbone_out_indices[2:] if cfg.is_hybrid else cfg.backbone_out_indices)
        feats = list(emb.intermediate_activations or []) if cfg.is_hybrid else []
        for i, layer in enumerate(model.dpt.encoder.layer):
            hidden = layer(hidden)
            if i in taps:
                feats.append(hidden)
        fused = model.neck(feats, h, w)
        return model.head(fused)


def rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs|: the tolerance every parity test states."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


NYU = {"depth_scale": 0.000305, "depth_shift": 0.1378, "invert_depth": True}


def metric_copy(folder, target, settings: dict = NYU):
    """A copy of a model folder whose config.json carries metric-depth settings (NYU's by default)."""
    import json
    import shutil

    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    config.update(settings)
    (target / "config.json").write_text(json.dumps(config))
    return target
