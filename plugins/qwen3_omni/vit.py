"""Qwen3-Omni's vision encoder, following transformers' ``Qwen3OmniMoeVisionEncoder``.

Patch 16 with temporal patch 2 (a Conv3d), a learned square table of position embeddings
resampled bilinearly (corners aligned) to each item's patch grid, 2D rotary positions
(row, column), LayerNorm / GELU(tanh) blocks with full attention within each frame group,
and a 2x2 patch merger to the Thinker width. Deepstack: after the blocks
``deepstack_visual_indexes`` the states go through their own merger (LayerNorm after the
2x2 shuffle) and are returned as ``EncoderOutput.levels``, which a Thinker that takes side
inputs adds to the media tokens' states after its first layers. Patches arrive in the
shared Qwen processor's merge-block order (normalised with mean and std 0.5), and tokens
leave in that order. Parameter names are transformers' (``visual.*`` without the prefix).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import (
    EncoderOutput,
    QwenPatchProcessor,
    QwenPixelsConfig,
    VisionEncoder,
    VisionProcessor,
    register,
    rotate_half,
)
from omnitrain.nn.segments import SegmentPlan, segment_attention


@dataclass
class Qwen3ViTConfig(QwenPixelsConfig):
    """``QwenPixelsConfig`` (the processor's settings, patch 16) and:"""

    hidden_size: int = 256  # the release: 1152
    depth: int = 4  # 27
    heads: int = 4  # 16
    intermediate_size: int = 512  # 4304
    num_position_embeddings: int = 576  # 2304: a 48 x 48 table
    deepstack_visual_indexes: list[int] = field(default_factory=lambda: [1, 2])  # (8, 16, 24)
    rope_theta: float = 10000.0
    patch_size: int = 16
    min_pixels: int = 64 * 64
    max_pixels: int = 32 * 32 * 1280


class Qwen3PatchProcessor(QwenPatchProcessor):
    """The Qwen processor with Qwen3-VL's normalisation (mean and std 0.5 per channel)."""

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)


class VisionAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: Tensor, plan: SegmentPlan, cos: Tensor, sin: Tensor) -> Tensor:
        N, d = x.shape
        q, k, v = self.qkv(x).view(N, 3, self.heads, d // self.heads).unbind(1)
        qf, kf = q.float(), k.float()  # the rotation in fp32, as the reference
        q = (qf * cos + rotate_half(qf) * sin).to(v.dtype)
        k = (kf * cos + rotate_half(kf) * sin).to(v.dtype)
        return self.proj(segment_attention(q, k, v, plan).reshape(N, d))


class VisionMLP(nn.Module):
    def __init__(self, d: int, inter: int) -> None:
        super().__init__()
        self.linear_fc1, self.linear_fc2 = nn.Linear(d, inter), nn.Linear(inter, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_fc2(F.gelu(self.linear_fc1(x), approximate="tanh"))


class VisionBlock(nn.Module):
    def __init__(self, d: int, heads: int, inter: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.attn = VisionAttention(d, heads)
        self.mlp = VisionMLP(d, inter)

    def forward(self, x: Tensor, plan: SegmentPlan, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), plan, cos, sin)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """2x2 neighbouring patches -> one token: LayerNorm before (the last merger) or after
    (deepstack's) the shuffle, then Linear, GELU, Linear."""

    def __init__(self, d: int, merge: int, out_dim: int, norm_after_shuffle: bool) -> None:
        super().__init__()
        self.width, self.after = d * merge * merge, norm_after_shuffle
        self.ln_q = nn.LayerNorm(self.width if norm_after_shuffle else d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(self.width, self.width), nn.GELU(), nn.Linear(self.width, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.ln_q(x.view(-1, self.width)) if self.after else self.ln_q(x).view(-1, self.width)
        return self.mlp(x)


def grid_positions(grids: Tensor, merge: int) -> tuple[Tensor, Tensor]:
    """Each patch's (row, column) in its frame, in merge-block order, and each patch's
    frame group (the attention segment), for items of (t, h, w) patch grids (CPU)."""
    rows, cols, frames = [], [], []
    first = 0
    for t, h, w in grids.tolist():
        r = torch.arange(h).view(h // merge, merge, 1, 1).expand(-1, -1, w // merge, merge)
        c = torch.arange(w).view(1, 1, w // merge, merge).expand(h // merge, merge, -1, -1)
        rows.append(r.transpose(1, 2).reshape(-1).repeat(t))
        cols.append(c.transpose(1, 2).reshape(-1).repeat(t))
        frames.append(torch.arange(first, first + t).repeat_interleave(h * w))
        first += t
    return torch.stack([torch.cat(rows), torch.cat(cols)]), torch.cat(frames)


@register("vision_encoder", "qwen3_vit", config=Qwen3ViTConfig)
class Qwen3ViT(VisionEncoder):
    """Qwen3-Omni's ViT: interpolated learned positions, 2D rotary, deepstack levels."""

    block_types = (VisionBlock,)

    def __init__(self, cfg: Qwen3ViTConfig, out_dim: int) -> None:
        super().__init__()
        side = int(cfg.num_position_embeddings ** 0.5)
        if side * side != cfg.num_position_embeddings or cfg.hidden_size % cfg.heads or (cfg.hidden_size // cfg.heads) % 4:
            raise ValueError("vision_encoder: num_position_embeddings must be a square, and hidden_size / heads a "
                             "multiple of 4 (2D rotary)")
        if any(not 0 <= i < cfg.depth for i in cfg.deepstack_visual_indexes):
            raise ValueError(f"vision_encoder.deepstack_visual_indexes={cfg.deepstack_visual_indexes}: each must be a "
                             f"block index below depth={cfg.depth}")
        self.cfg, self.side = cfg, side
        d, m = cfg.hidden_size, cfg.merge_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, d, (cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size),
                                          stride=(cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size))
        self.pos_embed = nn.Embedding(cfg.num_position_embeddings, d)
        self.blocks = nn.ModuleList(VisionBlock(d, cfg.heads, cfg.intermediate_size) for _ in range(cfg.depth))
        self.merger = PatchMerger(d, m, out_dim, norm_after_shuffle=False)
        self.merger_list = nn.ModuleList(PatchMerger(d, m, out_dim, norm_after_shuffle=True)
                                         for _ in cfg.deepstack_visual_indexes)
        spatial = d // cfg.heads // 2  # half the head for rows, half for columns
        inv = 1.0 / cfg.rope_theta ** (torch.arange(0, spatial, 2, dtype=torch.float) / spatial)
        self.register_buffer("inv_freq", inv, persistent=False)

    @classmethod
    def processor(cls, cfg: Qwen3ViTConfig) -> VisionProcessor:
        return Qwen3PatchProcessor(cfg)

    def interpolated_positions(self, grids: Tensor, rows_cols: Tensor) -> tuple[Tensor, Tensor]:
        """Each patch's learned position, the table resampled to its item's (h, w) grid
        (bilinear, corners aligned: ``linspace(0, side - 1, h)``): the four table rows and
        their weights per patch."""
        counts = grids.prod(-1)
        h = grids[:, 1].repeat_interleave(counts).float()
        w = grids[:, 2].repeat_interleave(counts).float()
        span = self.side - 1
        y = rows_cols[0].float() * span / (h - 1).clamp(min=1)
        x = rows_cols[1].float() * span / (w - 1).clamp(min=1)
        y0, x0 = y.long(), x.long()
        y1, x1 = (y0 + 1).clamp(max=span), (x0 + 1).clamp(max=span)
        dy, dx = y - y0, x - x0
        index = torch.stack([y0 * self.side + x0, y0 * self.side + x1, y1 * self.side + x0, y1 * self.side + x1], 1)
        weight = torch.stack([(1 - dy) * (1 - dx), (1 - dy) * dx, dy * (1 - dx), dy * dx], 1)
        return index, weight

    def forward(self, patches: Tensor, grids: Tensor) -> EncoderOutput:
        cfg, device = self.cfg, patches.device
        rows_cols, frames = grid_positions(grids.cpu(), cfg.merge_size)
        index, weight = self.interpolated_positions(grids.cpu(), rows_cols)
        tp, p = cfg.temporal_patch_size, cfg.patch_size
        x = self.patch_embed.proj(patches.view(-1, 3, tp, p, p).to(self.patch_embed.proj.weight.dtype))
        x = x.view(-1, cfg.hidden_size)
        pos = (self.pos_embed(index.to(device)) * weight.to(device)[..., None]).sum(1)
        x = x + pos.to(x.dtype)
        angles = rows_cols.to(device).float()[..., None] * self.inv_freq  # (2, N, head_dim / 4)
        half = torch.cat([angles[0], angles[1]], -1)
        full = torch.cat([half, half], -1)[:, None]
        cos, sin = full.cos(), full.sin()
        plan = SegmentPlan.build(frames, device)
        levels = []
        for i, block in enumerate(self.blocks):
            x = block(x, plan, cos, sin)
            if i in cfg.deepstack_visual_indexes:
                levels.append(self.merger_list[cfg.deepstack_visual_indexes.index(i)](x))
        return EncoderOutput(self.merger(x), levels)
