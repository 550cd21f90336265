"""Base class for three-row (time, height, width) rotary schemes: TMRoPE, M-RoPE, and
any variant a user writes. Subclasses say when a frame group happens and how a video's
own audio is laid out; the walk over segments and the rotation are shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from omnitrain.nn.rotary import default_section, multimodal_rotary
from omnitrain.positions.layout import AudioSeg, ImageSeg, Segment, TextSeg, VideoSeg, check_layout
from omnitrain.positions.pieces import same_on_rows, vision_ids
from omnitrain.slots import PositionScheme


@dataclass
class MultimodalRopeConfig:
    """What every three-row scheme reads; a scheme's own config extends it."""

    theta: float = 1000000.0
    mrope_section: list[int] | None = None  # None: 2:3:3 split of head_dim/2 ([16, 24, 24] at 128)
    # frequency channels T,H,W,T,H,W,... (Qwen3-Omni, Qwen3-VL; mrope_section [24, 20, 20] at
    # head_dim 128) instead of blocks of T, then H, then W (Qwen2.5-Omni)
    mrope_interleaved: bool = False
    position_id_per_seconds: int = 25  # images' temporal id step


class MultimodalRope(PositionScheme):
    """Three rows (time, height, width); subclasses decide the time of a frame group and
    how a video's own audio is laid out."""

    rows = 3

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg

    def frame_times(self, seg: VideoSeg) -> np.ndarray:
        """Temporal id offset of each frame group of a video (int64)."""
        raise NotImplementedError

    def position_ids(self, layout: list[Segment]) -> Tensor:
        check_layout(layout)
        ids = _Pieces()
        for seg in layout:
            if isinstance(seg, TextSeg | AudioSeg):
                ids.text(seg.span)
            elif isinstance(seg, ImageSeg):
                image_t = np.arange(seg.grid[0]) * self.cfg.position_id_per_seconds
                self._vision(ids, seg.grid, image_t)
            elif seg.audio_tokens:
                self._video_with_audio(ids, seg)
            else:
                self._vision(ids, seg.grid, self.frame_times(seg))
        return torch.from_numpy(ids.result())

    def _vision(self, ids: _Pieces, grid, t_values: np.ndarray) -> None:
        bos = ids.text(1)
        ids.body(vision_ids(bos + 1, grid, t_values))
        ids.restart(bos + 1 + max(int(t_values[-1]), grid[1] - 1, grid[2] - 1) + 1)  # eos; t_values rise
        ids.text(1)

    def _video_with_audio(self, ids: _Pieces, seg: VideoSeg) -> None:
        bos = ids.run_end
        ids.shared(bos, 2)  # <vision_bos><audio_bos>
        body, last_max = self.video_audio_body(bos + 1, seg)
        ids.body(body)
        ids.shared(last_max + 1, 2)  # <audio_eos><vision_eos>: the id after the body

    def video_audio_body(self, start: int, seg: VideoSeg) -> tuple[np.ndarray, int]:
        """(3, video + audio) int64 ids of the body in token order (as
        ``video_audio_order``), and the largest id of the piece laid out last (the eos
        follows it)."""
        raise NotImplementedError

    def section(self, head_dim: int) -> list[int]:
        return list(self.cfg.mrope_section or default_section(head_dim, self.rows))

    def check_head_dim(self, head_dim: int) -> None:
        super().check_head_dim(head_dim)
        section = self.section(head_dim)
        if sum(section) != head_dim // 2:
            raise ValueError(
                f"position.mrope_section={section} sums to {sum(section)}, but the attention "
                f"head_dim {head_dim} needs {head_dim // 2} (e.g. [16, 24, 24] for head_dim 128). "
                "Set position.mrope_section."
            )

    def rotary(self, position_ids: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
        return multimodal_rotary(position_ids, head_dim, self.cfg.theta, self.section(head_dim),
                                 self.cfg.mrope_interleaved)


class _Pieces:
    """Ids of one sample, built piece by piece. Consecutive text-like ids (text, audio,
    markers) are kept as one pending run and written with one ``arange``, which is what
    keeps a short sample's ids to a handful of array ops."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.run_start = self.run_end = 0

    def text(self, n: int) -> int:
        """Extend the run by ``n`` consecutive ids; returns the first of them."""
        first = self.run_end
        self.run_end += n
        return first

    def restart(self, next_id: int) -> None:
        """Close the run; the next text-like id is ``next_id``."""
        self._flush()
        self.run_start = self.run_end = next_id

    def shared(self, id_: int, n: int) -> None:
        """``n`` tokens that all hold ``id_``; text-like ids go on from ``id_ + 1``."""
        self._flush()
        self.pieces.append(same_on_rows(np.full(n, id_)))
        self.run_start = self.run_end = id_ + 1

    def body(self, ids: np.ndarray) -> None:
        self._flush()
        self.pieces.append(ids)

    def _flush(self) -> None:
        if self.run_end > self.run_start:
            self.pieces.append(same_on_rows(np.arange(self.run_start, self.run_end)))
        self.run_start = self.run_end

    def result(self) -> np.ndarray:
        self._flush()
        if not self.pieces:
            return np.zeros((3, 0), dtype=np.int64)
        return np.concatenate(self.pieces, axis=1)
