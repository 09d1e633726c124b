"""Vision Transformer backbone (ViT-B/16, ViT-L/16, and the hybrid's transformer part).

Intermediate block outputs come from `forward_intermediates`, an explicit method: no hooks and no
global state, so one model can serve several threads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def activation(name: str) -> nn.Module:
    return {"gelu": nn.GELU(), "relu": nn.ReLU()}[name]


class Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection (rows ordered q, k, v)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, act: str, eps: float, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch convolution: (B, C, H, W) -> tokens (B, H/p * W/p, D)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], list[torch.Tensor]]:
        """Returns tokens (B, N, D), the token grid (h, w), and no CNN features."""
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3]), []


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Resize (1, prefix + g*g, D) position embeddings to a (h, w) grid: bilinear, align_corners=False."""
    prefix, table = pos_embed[:, :num_prefix], pos_embed[0, num_prefix:]
    old = int(round(table.shape[0] ** 0.5))
    if (old, old) == tuple(grid):
        return pos_embed
    table = table.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([prefix, table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)


class VisionTransformer(nn.Module):
    """ViT encoder over patch tokens (or the hybrid's ResNet tokens) with a class token.

    `patch_embed` is any module mapping (B, C, H, W) to (tokens, grid, cnn_features).
    """

    def __init__(
        self,
        patch_embed: nn.Module,
        num_patches: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_dim: int,
        act: str = "gelu",
        eps: float = 1e-12,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_dim, act, eps, qkv_bias) for _ in range(depth))
        # The final norm is part of every checkpoint but DPT's neck reads block outputs before it.
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward_intermediates(self, x: torch.Tensor, indices: tuple[int, ...]) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Run the encoder up to the deepest requested block.

        Args:
            x: images (B, C, H, W), normalised.
            indices: 0-based block indices whose outputs to return.
        Returns:
            (features, grid): the hybrid stem's feature maps (B, C_i, H_i, W_i) (none for a plain
            ViT) followed by the requested block outputs (B, 1 + h*w, D), class token first, in the
            order of `indices`; and the token grid (h, w).
        """
        tokens, grid, cnn_features = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1) + resize_pos_embed(self.pos_embed, grid)
        wanted = {i: None for i in indices}
        for i, block in enumerate(self.blocks[: max(indices) + 1]):
            h = block(h)
            if i in wanted:
                wanted[i] = h
        return cnn_features + [wanted[i] for i in indices], grid
