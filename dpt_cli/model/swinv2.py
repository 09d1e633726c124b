"""Swin Transformer V2 backbone (MiDaS v3.1's dpt_swin2_*; transformers' Intel/dpt-swinv2-*).

Four stages of window attention over a (B, H, W, C) token map, with patch merging between them.
Each stage's window and shift are fixed by the trained size (`Swinv2Config.stage_window`), as in
transformers and timm; another input size zero-pads the map bottom/right to a multiple of the
window, builds the shift mask on the padded size and crops afterwards, exactly as transformers
does. Attention is cosine attention with a learned per-head temperature plus a continuous position
bias (a small MLP over log-spaced window offsets).

Everything that depends only on sizes (offset table, bias index, shift mask) is rebuilt once per
stage per forward: cheap next to the blocks, and it keeps the module free of state, safe to build
on the meta device and to share between threads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone_configs import Swinv2Config
from .vit import Mlp

MASKED = -100.0  # added to logits across shift regions: exp(-100) is zero next to any in-region logit
MAX_LOGIT_SCALE = math.log(100.0)
EDGE_EPS = 1e-5  # transformers builds the patch-embedding and merging LayerNorms with the default eps


def relative_coords(window: int, pretrained: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """((2w-1)^2, 2) log-spaced offsets (dy, dx), row-major over dy then dx, the cpb MLP's input.

    Offsets are scaled to [-8, 8] by the pretrained window (or by this window when none is given),
    then sign(t) * log2(1 + |t|) / 3. Built in float32 and cast, so half-precision models see the
    same table rounded once.
    """
    span = torch.arange(-(window - 1), window, device=device, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).reshape(-1, 2)
    if pretrained > 0:
        table = table / (pretrained - 1)
    elif window > 1:
        table = table / (window - 1)
    table = table * 8
    return (torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)).to(dtype)


def relative_index(window: int, device: torch.device) -> torch.Tensor:
    """(w^4,) int64: row of the offset table for each (query, key) pair of a window, both row-major."""
    y, x = torch.meshgrid(torch.arange(window, device=device), torch.arange(window, device=device), indexing="ij")
    y, x = y.reshape(-1), x.reshape(-1)
    return ((y[:, None] - y[None, :] + window - 1) * (2 * window - 1) + (x[:, None] - x[None, :] + window - 1)).reshape(-1)


def shift_mask(size: tuple[int, int], window: int, shift: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(nW, w*w, w*w) additive mask of a shifted block on a padded (Hp, Wp) map: 0 between tokens of
    the same region, MASKED across. Regions are cut at Hp - window and Hp - shift (likewise Wp): the
    strips that the cyclic roll brought round from the other side must not see their new neighbours."""
    def regions(n: int) -> torch.Tensor:
        i = torch.arange(n, device=device)
        return (i >= n - window).long() + (i >= n - shift).long()

    hp, wp = size
    label = regions(hp)[:, None] * 3 + regions(wp)[None, :]
    label = label.reshape(hp // window, window, wp // window, window).transpose(1, 2).reshape(-1, window * window)
    same = label[:, :, None] == label[:, None, :]
    return torch.zeros(same.shape, dtype=dtype, device=device).masked_fill(~same, MASKED)


class ContinuousPositionBias(nn.Module):
    """Linear(2, 512) -> ReLU -> Linear(512, heads, no bias): offsets ((2w-1)^2, 2) -> ((2w-1)^2, heads)."""

    def __init__(self, num_heads: int, hidden: int = 512) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, num_heads, bias=False)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(coords)))


class WindowAttention(nn.Module):
    """Cosine attention inside (shifted) windows of a token map, with a continuous position bias."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        # The key has no bias: the checkpoints store q and v biases only.
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb = ContinuousPositionBias(num_heads)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, coords: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
        """(heads, n, n) bias 16 * sigmoid(cpb(offset)) for the n = w*w tokens of a window."""
        # sigmoid on the small ((2w-1)^2) table, then gather straight into (heads, n*n): no permute copy
        table = 16 * torch.sigmoid(self.cpb(coords)).t()
        return table.index_select(1, index).reshape(-1, n, n)

    def forward(self, x: torch.Tensor, window: int, shift: int, coords: torch.Tensor, index: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C). `mask` is `shift_mask` of the padded map when shift > 0."""
        b, h, w, c = x.shape
        heads, n = self.num_heads, window * window
        hp, wp = -(-h // window) * window, -(-w // window) * window
        # Padded tokens are zeros that still go through qkv (so carry q/v biases), as in transformers.
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
        bias = None if self.q_bias is None else torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)
        # (B, Hp, Wp, 3C) -> 3 x (B, windows, heads, n, d), windows and their tokens row-major: one copy.
        qkv = qkv.reshape(b, hp // window, window, wp // window, window, 3, heads, c // heads)
        q, k, v = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, b, -1, heads, n, c // heads).unbind(0)
        scale = torch.clamp(self.logit_scale, max=MAX_LOGIT_SCALE).exp()
        q, k = F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)
        attn_bias = self.position_bias(coords, index, n)
        windows = q.shape[1]
        if mask is None:  # one bias for every window: batch the windows
            q, k, v = (t.reshape(b * windows, heads, n, -1) for t in (q, k, v))
            attn_mask = attn_bias[None]
        else:  # bias + mask differ per window: fold windows into heads so the mask broadcasts over B only
            q, k, v = (t.reshape(b, windows * heads, n, -1) for t in (q, k, v))
            attn_mask = (mask[:, None] + attn_bias[None]).reshape(1, windows * heads, n, n)
        # SDPA wants the mask in q's dtype (they differ under autocast)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype), scale=1.0)
        out = out.reshape(b, hp // window, wp // window, heads, window, window, c // heads)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return self.proj(out[:, :h, :w])


class SwinBlock(nn.Module):
    """Res-post-norm block: x + norm1(attn(x)), then x + norm2(mlp(x)); maps (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, cfg: Swinv2Config) -> None:
        super().__init__()
        self.attn = WindowAttention(dim, num_heads, cfg.qkv_bias)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(cfg.mlp_ratio * dim), "gelu")
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, window: int, shift: int, coords: torch.Tensor, index: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.norm1(self.attn(x, window, shift, coords, index, mask))
        return x + self.norm2(self.mlp(x))


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, 2C): 2x2 neighbours concatenated (row0,col0), (row1,col0),
    (row0,col1), (row1,col1), then Linear(4C, 2C, no bias) and LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=EDGE_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        # (B, h, row, w, col, C) -> (B, h, w, col, row, C): column-major neighbour order.
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.norm(self.reduction(x))


class Stage(nn.Module):
    """Blocks alternating plain and shifted windows, then (except the last stage) patch merging."""

    def __init__(self, cfg: Swinv2Config, i: int) -> None:
        super().__init__()
        dim = cfg.stage_widths[i]
        self.window, self.shift = cfg.stage_window(i)
        self.pretrained_window = cfg.pretrained_window_sizes[i]
        self.blocks = nn.ModuleList(SwinBlock(dim, cfg.num_heads[i], cfg) for _ in range(cfg.depths[i]))
        self.merge = PatchMerging(dim) if i < len(cfg.depths) - 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C), before merging."""
        window, shift = self.window, self.shift
        param = self.blocks[0].attn.cpb.fc1.weight
        coords = relative_coords(window, self.pretrained_window, param.dtype, x.device)
        index = relative_index(window, x.device)
        mask = None
        if shift:
            padded = (-(-x.shape[1] // window) * window, -(-x.shape[2] // window) * window)
            mask = shift_mask(padded, window, shift, x.dtype, x.device)
        for j, block in enumerate(self.blocks):
            odd = j % 2 == 1  # odd blocks shift
            x = block(x, window, shift if odd else 0, coords, index, mask if odd else None)
        return x


class PatchEmbed(nn.Module):
    """patch x patch convolution and LayerNorm: (B, 3, H, W) -> (B, H/p, W/p, C)."""

    def __init__(self, cfg: Swinv2Config) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.num_channels, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=EDGE_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Swinv2Backbone(nn.Module):
    """Images (B, 3, H, W) -> the stage outputs as (B, C_i, H_i, W_i) maps; no final norm (DPT reads
    stage outputs before merging)."""

    def __init__(self, cfg: Swinv2Config) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(cfg)
        self.stages = nn.ModuleList(Stage(cfg, i) for i in range(len(cfg.depths)))

    def forward_intermediates(self, x: torch.Tensor, indices: tuple[int, ...]) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """x: normalised images (B, 3, H, W), H and W multiples of 32 -> (the outputs of the stages in
        `indices` (0-based) as maps (B, C_i, H/4/2^i, W/4/2^i), taken after each stage's last block
        and before its patch merging, no final norm; the patch grid (H/4, W/4))."""
        h = self.patch_embed(x)
        grid = (h.shape[1], h.shape[2])
        wanted: dict[int, torch.Tensor | None] = {i: None for i in indices}
        last = max(indices)
        for i, stage in enumerate(self.stages[: last + 1]):
            h = stage(h)
            if i in wanted:
                wanted[i] = h.permute(0, 3, 1, 2)
            if i < last:
                h = stage.merge(h)
        return [wanted[i] for i in indices], grid
