"""Qwen2-VL/Qwen2.5-Omni pixel processing: smart resize, CLIP normalisation, and the
merge-ordered patch layout (the 4 patches of one 2x2 merge unit are consecutive rows).

Shared by every vision encoder that reads Qwen's ``pixel_values`` layout; its config
extends ``QwenPixelsConfig``. Video frames are resized within their own bounds (None: the
image bounds), as Qwen2.5-Omni's processor does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from omnitrain.slots import VisionProcessor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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


@dataclass
class QwenPixelsConfig:
    """What the shared processor reads; a vision encoder's config extends it (and may
    change the defaults)."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    # a video frame's area bounds; None: the image bounds. Qwen2.5-Omni's release: 128 and 768
    # merged tokens of pixels (100352, 602112), set by configs/model/omni*.yaml
    video_min_pixels: int | None = None
    video_max_pixels: int | None = None
    video_fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768


class QwenPatchProcessor(VisionProcessor):
    """Resize, normalise and flatten frames into merge-ordered patches (Qwen2-VL layout).
    ``mean``/``std``: CLIP's (Qwen2-VL, Qwen2.5-Omni); a subclass sets others (Qwen3's 0.5)."""

    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.merge_size = cfg.merge_size
        self.video_fps = cfg.video_fps
        self.min_frames = cfg.min_frames
        self.max_frames = cfg.max_frames

    @property
    def temporal_patch_size(self) -> int:
        return self.cfg.temporal_patch_size

    def _resize(self, frames: np.ndarray, min_pixels: int, max_pixels: int) -> np.ndarray:
        c = self.cfg
        h, w = smart_resize(frames.shape[1], frames.shape[2], c.patch_size * c.merge_size, min_pixels, max_pixels)
        if (h, w) == frames.shape[1:3]:
            return frames
        return np.stack(
            [np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames]
        )

    def _patchify(self, frames: np.ndarray, pixels: tuple[int, int]) -> tuple[Tensor, tuple[int, int, int]]:
        c = self.cfg
        x = torch.from_numpy(self._resize(frames, *pixels)).float().div_(255.0)  # (T, H, W, 3)
        x = (x - torch.tensor(self.mean)) / torch.tensor(self.std)
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
        return self._patchify(frames, (self.cfg.min_pixels, self.cfg.max_pixels))

    def video(self, frames: np.ndarray) -> tuple[Tensor, tuple[int, int, int]]:
        c = self.cfg
        low = c.video_min_pixels if c.video_min_pixels is not None else c.min_pixels
        high = c.video_max_pixels if c.video_max_pixels is not None else c.max_pixels
        return self._patchify(frames, (low, high))
