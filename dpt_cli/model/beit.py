"""BEiT backbone (MiDaS v3.1's dpt_beit_*; transformers' Intel/dpt-beit-*).

ViT blocks without absolute position embeddings: position enters through a relative position bias
per block, resized to any input's token grid exactly as MiDaS v3.1 does (bilinear, align_corners
False, the three class-token rows kept). Layer scale after attention and MLP; q and v biases only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone_configs import BeitConfig
from .vit import Mlp, PatchEmbed


def relative_index(grid: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """(1 + h*w, 1 + h*w) int64 rows of the bias table for a (h, w) token grid, class token first.

    Patch pairs: (yi - yj + h - 1) * (2w - 1) + (xi - xj + w - 1); then the three class-token rows
    that follow the (2h-1)(2w-1) offsets: class query -> patch key, patch query -> class key,
    class -> class.
    """
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    offsets = (ys[:, None] - ys[None, :] + h - 1) * (2 * w - 1) + (xs[:, None] - xs[None, :] + w - 1)
    n = (2 * h - 1) * (2 * w - 1)
    index = torch.full((h * w + 1, h * w + 1), n, dtype=torch.int64, device=device)
    index[1:, 1:] = offsets
    index[1:, 0] = n + 1
    index[0, 0] = n + 2
    return index


class RelativeAttention(nn.Module):
    """Self-attention with a learned relative position bias and biases on q and v only."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads, self.grid = num_heads, grid
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.bias_table = nn.Parameter(torch.zeros((2 * grid[0] - 1) * (2 * grid[1] - 1) + 3, num_heads))
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, grid: tuple[int, int], index: torch.Tensor) -> torch.Tensor:
        """(1, heads, 1 + h*w, 1 + h*w) bias for a (h, w) grid; `index` is `relative_index(grid)`."""
        table = self.bias_table
        if tuple(grid) != self.grid:
            offsets, cls_rows = table[:-3], table[-3:]
            image = offsets.reshape(2 * self.grid[0] - 1, 2 * self.grid[1] - 1, -1).permute(2, 0, 1)[None]
            image = F.interpolate(image, size=(2 * grid[0] - 1, 2 * grid[1] - 1), mode="bilinear", align_corners=False)
            table = torch.cat([image[0].permute(1, 2, 0).reshape(-1, self.num_heads), cls_rows])
        # gathered head-major (index_select: the fastest gather here), so that the (heads, N, N)
        # result is contiguous, as the attention kernel wants it
        n = index.shape[0]
        return torch.index_select(table.t().contiguous(), 1, index.reshape(-1)).reshape(1, -1, n, n)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], index: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D), N = 1 + h*w."""
        b, n, d = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.position_bias(grid, index).to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class BeitBlock(nn.Module):
    """x + s1 * attn(norm1(x)), then x + s2 * mlp(norm2(x)); s1, s2 per-channel layer scales."""

    def __init__(self, c: BeitConfig) -> None:
        super().__init__()
        dim = c.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=c.layer_norm_eps)
        self.attn = RelativeAttention(dim, c.num_attention_heads, c.grid)
        self.norm2 = nn.LayerNorm(dim, eps=c.layer_norm_eps)
        self.mlp = Mlp(dim, c.intermediate_size, "gelu")
        self.layer_scale1 = nn.Parameter(torch.ones(dim)) if c.layer_scale else None
        self.layer_scale2 = nn.Parameter(torch.ones(dim)) if c.layer_scale else None

    def forward(self, x: torch.Tensor, grid: tuple[int, int], index: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x), grid, index)
        x = x + (y if self.layer_scale1 is None else self.layer_scale1 * y)
        y = self.mlp(self.norm2(x))
        return x + (y if self.layer_scale2 is None else self.layer_scale2 * y)


class BeitBackbone(nn.Module):
    """Images (B, 3, H, W) -> class + patch tokens after chosen blocks; no final norm (DPT reads
    block outputs)."""

    def __init__(self, c: BeitConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(c.num_channels, c.hidden_size, c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.blocks = nn.ModuleList(BeitBlock(c) for _ in range(c.num_hidden_layers))

    def forward_intermediates(self, x: torch.Tensor, indices: tuple[int, ...]) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """(B, 3, H, W) normalised -> (the outputs (B, 1 + h*w, D) of the blocks in `indices`, class
        token first, in that order; the token grid (h, w) = (H/16, W/16))."""
        tokens, grid, _ = self.patch_embed(x)
        h = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        index = relative_index(grid, h.device)  # shared by every block: one per forward
        wanted = {i: None for i in indices}
        for i, block in enumerate(self.blocks[: max(indices) + 1]):
            h = block(h, grid, index)
            if i in wanted:
                wanted[i] = h
        return [wanted[i] for i in indices], grid
