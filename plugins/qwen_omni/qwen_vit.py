"""Qwen2.5-Omni's vision encoder, faithful to transformers' ``Qwen2_5OmniVisionEncoder``.

Patch 14 with temporal patch 2 (an image is two identical frames), 2D rotary positions
(row and column frequencies, no temporal rotary), window attention over
``window_size``-pixel windows with a few full-attention layers (attention never crosses
a frame group), RMSNorm / SwiGLU blocks with biases, and a 2x2 patch merger to the
Thinker width. Dynamic resolution within min/max pixels comes from the shared Qwen
processor. Windows and frames are expressed as attention segments, so tokens are
never permuted and the output is in the processor's raster (t, y, x) order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import (
    QwenPatchProcessor,
    QwenPixelsConfig,
    RMSNorm,
    VisionEncoder,
    VisionProcessor,
    register,
    rotate_half,
)
from omnitrain.nn.segments import SegmentPlan, segment_attention


@dataclass
class QwenViTConfig(QwenPixelsConfig):
    """``QwenPixelsConfig`` (the processor's settings) and:"""

    hidden_size: int = 256  # Qwen2.5-Omni-7B: 1280
    depth: int = 4  # 32
    heads: int = 4  # 16
    intermediate_size: int = 512  # 3420
    window_size: int = 112  # pixels: 112 / 14 / 2 = 4x4 merged tokens per window
    fullatt_block_indexes: list[int] = field(default_factory=lambda: [3])  # 7B: [7, 15, 23, 31]
    rope_theta: float = 10000.0


class VisionBlock(nn.Module):
    def __init__(self, d: int, heads: int, inter: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.gate_proj, self.up_proj = nn.Linear(d, inter), nn.Linear(d, inter)
        self.down_proj = nn.Linear(inter, d)

    def forward(self, x: Tensor, plan: SegmentPlan, cos: Tensor, sin: Tensor) -> Tensor:
        N, d = x.shape
        h = self.norm1(x)
        q, k, v = (p(h).view(N, self.heads, d // self.heads) for p in (self.q, self.k, self.v))
        q, k = (((t.float() * cos) + rotate_half(t.float()) * sin).to(t.dtype) for t in (q, k))
        x = x + self.proj(segment_attention(q, k, v, plan).reshape(N, d))
        h = self.norm2(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class PatchMerger(nn.Module):
    def __init__(self, d: int, out_dim: int, merge: int) -> None:
        super().__init__()
        self.ln_q = RMSNorm(d)
        wide = d * merge * merge
        self.mlp = nn.Sequential(nn.Linear(wide, wide), nn.GELU(), nn.Linear(wide, out_dim))
        self.wide = wide

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.ln_q(x).view(-1, self.wide))


@register("vision_encoder", "qwen_vit", config=QwenViTConfig)
class QwenViT(VisionEncoder):
    """Qwen2.5-Omni ViT: 2D RoPE, window + full attention, 2x2 merger."""

    block_types = (VisionBlock,)

    def __init__(self, cfg: QwenViTConfig, out_dim: int) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.heads or (cfg.hidden_size // cfg.heads) % 4:
            raise ValueError("vision_encoder.hidden_size / heads must be a multiple of 4 (2D rotary)")
        self.cfg = cfg
        patch_dim = 3 * cfg.temporal_patch_size * cfg.patch_size**2
        self.patch_embed = nn.Linear(patch_dim, cfg.hidden_size, bias=False)
        self.blocks = nn.ModuleList(
            VisionBlock(cfg.hidden_size, cfg.heads, cfg.intermediate_size) for _ in range(cfg.depth)
        )
        self.merger = PatchMerger(cfg.hidden_size, out_dim, cfg.merge_size)

    @classmethod
    def processor(cls, cfg: QwenViTConfig) -> VisionProcessor:
        return QwenPatchProcessor(cfg)

    def layout(self, grids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per patch, in merge order: (row, col) patch coordinates, frame-group id and
        window id, laid out on the host from ``grids`` (a CPU tensor)."""
        m = self.cfg.merge_size
        ws = self.cfg.window_size // m // self.cfg.patch_size  # window side in merged tokens
        rows, cols, frames, windows = [], [], [], []
        frame_base = window_base = 0
        for t, h, w in grids.tolist():
            by = torch.arange(h // m).view(-1, 1, 1, 1).expand(h // m, w // m, m, m)
            bx = torch.arange(w // m).view(1, -1, 1, 1).expand(h // m, w // m, m, m)
            iy = torch.arange(m).view(1, 1, -1, 1).expand(h // m, w // m, m, m)
            ix = torch.arange(m).view(1, 1, 1, -1).expand(h // m, w // m, m, m)
            per_frame = h * w
            rows.append((by * m + iy).reshape(-1).repeat(t))
            cols.append((bx * m + ix).reshape(-1).repeat(t))
            frames.append(frame_base + torch.arange(t).repeat_interleave(per_frame))
            n_wx = -(-(w // m) // ws)
            n_win = -(-(h // m) // ws) * n_wx
            in_frame = ((by // ws) * n_wx + bx // ws).reshape(-1)
            windows.append(window_base + (torch.arange(t)[:, None] * n_win + in_frame[None]).reshape(-1))
            frame_base += t
            window_base += t * n_win
        return torch.stack([torch.cat(rows), torch.cat(cols)], -1), torch.cat(frames), torch.cat(windows)

    def rotary(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        dim = self.cfg.hidden_size // self.cfg.heads // 2
        inv = 1.0 / self.cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=coords.device) / dim)
        freqs = torch.cat([coords[:, :1].float() * inv, coords[:, 1:].float() * inv], dim=-1)
        emb = torch.cat([freqs, freqs], dim=-1)[:, None, :]  # (N, 1, head_dim)
        return emb.cos(), emb.sin()

    def forward(self, patches: Tensor, grids: Tensor) -> Tensor:
        coords, frames, windows = self.layout(grids)
        cos, sin = self.rotary(coords.to(patches.device, non_blocking=True))
        full, local = SegmentPlan.build(frames, patches.device), SegmentPlan.build(windows, patches.device)
        x = self.patch_embed(patches)
        for i, block in enumerate(self.blocks):
            x = block(x, full if i in self.cfg.fullatt_block_indexes else local, cos, sin)
        return self.merger(x)


def hf_vision_state_dict(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map transformers' ``Qwen2_5OmniVisionEncoder`` weights to this plugin's names."""
    out = {}
    for key, value in hf.items():
        if "rotary_pos_emb" in key:
            continue
        if key == "patch_embed.proj.weight":  # Conv3d with stride = kernel is a linear map
            out["patch_embed.weight"] = value.reshape(value.shape[0], -1)
            continue
        out[key.replace(".attn.", ".").replace(".mlp.gate_proj", ".gate_proj")
               .replace(".mlp.up_proj", ".up_proj").replace(".mlp.down_proj", ".down_proj")] = value
    return out
