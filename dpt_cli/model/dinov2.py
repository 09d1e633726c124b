"""DINOv2 ViT backbone (Depth Anything V1/V2's encoder; transformers' facebook/dpt-dinov2-*).

A ViT with patch 14, one class token, per-channel layer scale on both residual branches and either a
GELU MLP or (giant) a SwiGLU MLP. The learned position table covers the trained grid and is resized
per input with the original facebookresearch/dinov2 rule (`interpolate_pos_embed`), which differs
from transformers 5.x at every size except the trained square one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone_configs import Dinov2Config
from .vit import Attention, Mlp, PatchEmbed

# The original's "historical kludge" (dino issue #8): the scale factor is (n + 0.1) / table side. It
# does not change the output size (floor), but it does change the source coordinates, so it is kept.
INTERPOLATE_OFFSET = 0.1


def interpolate_pos_embed(pos_embed: torch.Tensor, table_grid: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(1, 1 + gh*gw, C) table for `table_grid` (gh, gw) -> (1, 1 + h*w, C) for the token grid (h, w).

    Exactly the original rule: untouched only when the patch count matches AND the input is square;
    otherwise the patch part is resized in float32, bicubic (a = -0.75), align_corners and antialias
    off, called with scale factors ((h + 0.1) / gh, (w + 0.1) / gw) -- height on the height axis --
    so PyTorch maps output to source with those factors, not with gh / h. The class entry is kept.
    """
    (gh, gw), (h, w) = table_grid, grid
    if h * w == gh * gw and h == w:
        return pos_embed
    cls, table = pos_embed[:, :1], pos_embed[:, 1:]
    dim = table.shape[-1]
    table = table.reshape(1, gh, gw, dim).permute(0, 3, 1, 2).float()
    scale = ((h + INTERPOLATE_OFFSET) / gh, (w + INTERPOLATE_OFFSET) / gw)
    table = F.interpolate(table, scale_factor=scale, mode="bicubic", align_corners=False, antialias=False)
    if table.shape[-2:] != (h, w):  # cannot happen for grids below ~1e14, but a silent misfit would be worse
        raise RuntimeError(f"position table resized to {tuple(table.shape[-2:])}, expected {(h, w)}")
    table = table.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, h * w, dim)
    return torch.cat([cls, table], dim=1)


class SwiGLU(nn.Module):
    """fc2(silu(gate) * up) with gate and up fused in fc1 (rows: gate first, then up), as the
    original's `w12` / transformers' on-disk `weights_in`: (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(gate) * up)


class Dinov2Block(nn.Module):
    """x + s1 * attn(norm1(x)), then x + s2 * mlp(norm2(x)); s1, s2 per-channel layer scales."""

    def __init__(self, c: Dinov2Config) -> None:
        super().__init__()
        dim = c.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=c.layer_norm_eps)
        self.attn = Attention(dim, c.num_attention_heads, c.qkv_bias)
        self.layer_scale1 = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=c.layer_norm_eps)
        self.mlp = SwiGLU(dim, c.mlp_hidden) if c.use_swiglu_ffn else Mlp(dim, c.mlp_hidden, "gelu")
        self.layer_scale2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        x = x + self.layer_scale1 * self.attn(self.norm1(x))
        return x + self.layer_scale2 * self.mlp(self.norm2(x))


class Dinov2Backbone(nn.Module):
    """Images (B, 3, H, W) -> class + patch tokens after chosen blocks, optionally through the final
    LayerNorm (Depth Anything: yes; DPT-DINOv2: no)."""

    def __init__(self, cfg: Dinov2Config) -> None:
        super().__init__()
        dim, (gh, gw) = cfg.hidden_size, cfg.grid
        self.grid, self.apply_layernorm = (gh, gw), cfg.apply_layernorm
        self.patch_embed = PatchEmbed(cfg.num_channels, dim, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + gh * gw, dim))
        # Training-only (masked image modelling); checkpoints carry it, so loading stays strict.
        self.mask_token = nn.Parameter(torch.zeros(1, dim)) if cfg.use_mask_token else None
        self.blocks = nn.ModuleList(Dinov2Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)

    def forward_intermediates(self, x: torch.Tensor, indices: tuple[int, ...]) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """x: normalised images (B, 3, H, W), H and W multiples of the patch (14) -> (the outputs
        (B, 1 + h*w, C) of the blocks in `indices` (0-based, in that order), class token first, each
        through the final LayerNorm when cfg.apply_layernorm; the token grid (h, w) = (H/14, W/14)).
        Blocks after the deepest requested one are not run."""
        tokens, grid, _ = self.patch_embed(x)
        h = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        h = h + interpolate_pos_embed(self.pos_embed, self.grid, grid)
        wanted = {i: None for i in indices}
        for i, block in enumerate(self.blocks[: max(indices) + 1]):
            h = block(h)
            if i in wanted:
                wanted[i] = self.norm(h) if self.apply_layernorm else h
        return [wanted[i] for i in indices], grid
