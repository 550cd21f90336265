"""A small patch-based vision encoder for images and video frames.

The baseline of the ``vision_encoder`` slot, with Qwen2.5-Omni's pixel layout:
patch 14, temporal patch 2 (an image is two identical frames), 2x2 spatial merge, so
a (t, h, w) patch grid gives t * h/2 * w/2 Thinker tokens. Full attention within
each item, 2D sinusoidal patch positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnitrain.api import (
    QwenPatchProcessor,
    QwenPixelsConfig,
    TransformerBlock,
    VisionEncoder,
    VisionProcessor,
    register,
    segment_mask,
    sinusoidal_embedding,
)


@dataclass
class PatchViTConfig(QwenPixelsConfig):
    """``QwenPixelsConfig`` (the processor's settings) and:"""

    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    max_pixels: int = 112 * 112  # small images, few frames: the baseline's demo scale
    min_frames: int = 2
    max_frames: int = 16


@register("vision_encoder", "patch_vit", config=PatchViTConfig)
class PatchViT(VisionEncoder):
    """Linear patch embedding + small transformer + 2x2 patch merger; baseline."""

    block_types = (TransformerBlock,)

    def __init__(self, cfg: PatchViTConfig, out_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        patch_dim = 3 * cfg.temporal_patch_size * cfg.patch_size**2
        self.patch_embed = nn.Linear(patch_dim, cfg.dim)
        self.layers = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.ffn_dim) for _ in range(cfg.layers)
        )
        merged = cfg.dim * cfg.merge_size**2
        self.ln_q = nn.LayerNorm(cfg.dim)
        self.merger = nn.Sequential(nn.Linear(merged, merged), nn.GELU(), nn.Linear(merged, out_dim))

    @classmethod
    def processor(cls, cfg: PatchViTConfig) -> VisionProcessor:
        return QwenPatchProcessor(cfg)

    def _positions(self, grids: Tensor, device: torch.device) -> Tensor:
        """2D sinusoidal embedding of each patch's (row, col), in merge order; the
        coordinates are laid out on the host (``grids`` is there) and moved once."""
        m, dim = self.cfg.merge_size, self.cfg.dim
        rows, cols = [], []
        for t, h, w in grids.tolist():
            r = torch.arange(h).view(h // m, m, 1, 1).expand(h // m, m, w // m, m)
            col = torch.arange(w).view(1, 1, w // m, m).expand(h // m, m, w // m, m)
            rows.append(r.permute(0, 2, 1, 3).reshape(-1).repeat(t))
            cols.append(col.permute(0, 2, 1, 3).reshape(-1).repeat(t))
        r = torch.cat(rows).to(device, non_blocking=True)
        c = torch.cat(cols).to(device, non_blocking=True)
        return torch.cat([sinusoidal_embedding(r, dim // 2), sinusoidal_embedding(c, dim // 2)], -1)

    def forward(self, patches: Tensor, grids: Tensor) -> Tensor:
        x = self.patch_embed(patches) + self._positions(grids, patches.device).to(patches.dtype)
        sizes = grids.prod(-1)
        item = torch.repeat_interleave(torch.arange(1, len(sizes) + 1), sizes).to(x.device, non_blocking=True)
        mask = segment_mask(item[None])  # items never attend to each other
        for layer in self.layers:
            x = layer(x[None], mask)[0]
        x = self.ln_q(x).reshape(-1, self.cfg.dim * self.cfg.merge_size**2)
        return self.merger(x)

