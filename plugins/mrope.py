"""M-RoPE (Qwen2-VL): three rows like TMRoPE, but a video's time row is the frame-group
index, with no absolute time and no audio/video interleaving.

The baseline for "does time alignment matter". A video's own audio track, which
Qwen2-VL never saw, is laid out after the whole video body with consecutive ids, like
any audio segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnitrain.api import MultimodalRope, MultimodalRopeConfig, VideoSeg, register
from omnitrain.positions.pieces import same_on_rows, vision_ids


@dataclass
class MRopeConfig(MultimodalRopeConfig):
    """``MultimodalRopeConfig``: theta, mrope_section, mrope_interleaved, position_id_per_seconds
    (here the images' temporal id step; video time comes from the frames' timestamps)."""


@register("position", "mrope", config=MRopeConfig)
class MRope(MultimodalRope):
    """Qwen2-VL M-RoPE: frame index (not seconds) on row 0, height and width on rows 1-2."""

    def frame_times(self, seg: VideoSeg) -> np.ndarray:
        return np.arange(seg.grid[0])

    def video_audio_body(self, start: int, seg: VideoSeg) -> tuple[np.ndarray, int]:
        t, h, w = seg.grid
        video = vision_ids(start, seg.grid, self.frame_times(seg))
        first = start + max(t - 1, h - 1, w - 1) + 1
        audio = same_on_rows(np.arange(first, first + seg.audio_tokens))
        return np.concatenate([video, audio], axis=1), first + seg.audio_tokens - 1
