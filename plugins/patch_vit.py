"""A small patch-based vision encoder for images and video frames.

The baseline of the ``vision_encoder`` slot, with Qwen2.5-Omni's pixel layout:
patch 14, temporal patch 2 (an image is two identical frames), 2x2 spatial merge, so
a (t, h, w) patch grid gives t * h/2 * w/2 Thinker tokens. Full attention within
each item, 2D sinusoidal patch positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from omnitrain.nn import TransformerBlock, segment_mask, sinusoidal_embedding
from omnitrain.registry import register
from omnitrain.slots import VisionEncoder, VisionProcessor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class PatchViTConfig:
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112
    video_fps: float = 2.0
    min_frames: int = 2
    max_frames: int = 16


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int):
    """Qwen2-VL's rule: both sides multiples of ``factor``, area within [min, max]."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


class QwenPatchProcessor(VisionProcessor):
    """Resize, normalise and flatten frames into merge-ordered patches (Qwen2-VL layout)."""

    def __init__(self, cfg: PatchViTConfig) -> None:
        self.cfg = cfg
        self.merge_size = cfg.merge_size
        self.video_fps = cfg.video_fps
        self.min_frames = cfg.min_frames
        self.max_frames = cfg.max_frames

    @property
    def temporal_patch_size(self) -> int:
        return self.cfg.temporal_patch_size

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        c = self.cfg
        h, w = smart_resize(
            frames.shape[1], frames.shape[2], c.patch_size * c.merge_size, c.min_pixels, c.max_pixels
        )
        if (h, w) == frames.shape[1:3]:
            return frames
        return np.stack(
            [np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames]
        )

    def _patchify(self, frames: np.ndarray) -> tuple[Tensor, tuple[int, int, int]]:
        c = self.cfg
        x = torch.from_numpy(self._resize(frames)).float().div_(255.0)  # (T, H, W, 3)
        x = (x - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
        x = x.permute(0, 3, 1, 2)  # (T, C, H, W)
        tp, p, m = c.temporal_patch_size, c.patch_size, c.merge_size
        if x.shape[0] % tp:
            x = torch.cat([x, x[-1:].expand(tp - x.shape[0] % tp, -1, -1, -1)])
        T, C, H, W = x.shape
        gt, gh, gw = T // tp, H // p, W // p
        x = x.reshape(gt, tp, C, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return x.reshape(gt * gh * gw, C * tp * p * p).contiguous(), (gt, gh, gw)

    def image(self, rgb: np.ndarray) -> tuple[Tensor, tuple[int, int, int]]:
        frames = np.repeat(rgb[None], self.cfg.temporal_patch_size, axis=0)
        return self._patchify(frames)

    def video(self, frames: np.ndarray) -> tuple[Tensor, tuple[int, int, int]]:
        return self._patchify(frames)


@register("vision_encoder", "patch_vit", config=PatchViTConfig)
class PatchViT(VisionEncoder):
    """Linear patch embedding + small transformer + 2x2 patch merger; baseline."""

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

    def _positions(self, grids: Tensor) -> Tensor:
        """2D sinusoidal embedding of each patch's (row, col), in merge order."""
        m, dim = self.cfg.merge_size, self.cfg.dim
        rows, cols = [], []
        for t, h, w in grids.tolist():
            r = torch.arange(h).view(h // m, m, 1, 1).expand(h // m, m, w // m, m)
            col = torch.arange(w).view(1, 1, w // m, m).expand(h // m, m, w // m, m)
            rows.append(r.permute(0, 2, 1, 3).reshape(-1).repeat(t))
            cols.append(col.permute(0, 2, 1, 3).reshape(-1).repeat(t))
        r = torch.cat(rows).to(grids.device)
        c = torch.cat(cols).to(grids.device)
        return torch.cat([sinusoidal_embedding(r, dim // 2), sinusoidal_embedding(c, dim // 2)], -1)

    def forward(self, patches: Tensor, grids: Tensor) -> Tensor:
        x = self.patch_embed(patches) + self._positions(grids).to(patches.dtype)
        sizes = grids.prod(-1)
        item = torch.repeat_interleave(torch.arange(1, len(sizes) + 1, device=x.device), sizes)
        mask = segment_mask(item[None])  # items never attend to each other
        for layer in self.layers:
            x = layer(x[None], mask)[0]
        x = self.ln_q(x).reshape(-1, self.cfg.dim * self.cfg.merge_size**2)
        return self.merger(x)

