"""Base class for three-row (time, height, width) rotary schemes: TMRoPE, M-RoPE, and
any variant a user writes. Subclasses say when a frame group happens and how a video's
own audio is laid out; the walk over segments and the rotation are shared.
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.layout import AudioSeg, ImageSeg, Segment, TextSeg, VideoSeg, check_layout
from omnitrain.nn.rotary import default_section, multimodal_rotary
from omnitrain.positions import same_on_rows, vision_ids
from omnitrain.slots import PositionScheme


class MultimodalRope(PositionScheme):
    """Three rows (time, height, width); subclasses decide the time of a frame group and
    how a video's own audio is laid out."""

    rows = 3

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg

    def frame_times(self, seg: VideoSeg) -> Tensor:
        """Temporal id offset of each frame group of a video."""
        raise NotImplementedError

    def position_ids(self, layout: list[Segment]) -> Tensor:
        check_layout(layout)
        pieces: list[Tensor] = []
        nxt = 0
        for seg in layout:
            if isinstance(seg, TextSeg | AudioSeg):
                pieces.append(same_on_rows(torch.arange(nxt, nxt + seg.span)))
                nxt += seg.span
            elif isinstance(seg, ImageSeg):
                image_t = torch.arange(seg.grid[0]) * self.cfg.position_id_per_seconds
                nxt = self._vision(pieces, nxt, seg.grid, image_t)
            elif seg.audio_tokens:
                nxt = self._video_with_audio(pieces, nxt, seg)
            else:
                nxt = self._vision(pieces, nxt, seg.grid, self.frame_times(seg))
        if not pieces:
            return torch.zeros(3, 0, dtype=torch.long)
        return torch.cat(pieces, dim=1)

    def _vision(self, pieces: list[Tensor], nxt: int, grid, t_values: Tensor) -> int:
        body = vision_ids(nxt + 1, grid, t_values)
        eos = nxt + 1 + max(int(t_values[-1]), grid[1] - 1, grid[2] - 1) + 1  # t_values rise
        pieces += [same_on_rows(torch.tensor([nxt])), body, same_on_rows(torch.tensor([eos]))]
        return eos + 1

    def _video_with_audio(self, pieces: list[Tensor], nxt: int, seg: VideoSeg) -> int:
        body, last_max = self.video_audio_body(nxt + 1, seg)
        eos = last_max + 1
        pieces += [same_on_rows(torch.tensor([nxt, nxt])), body, same_on_rows(torch.tensor([eos, eos]))]
        return eos + 1

    def video_audio_body(self, start: int, seg: VideoSeg) -> tuple[Tensor, int]:
        """(3, video + audio) ids of the body in token order (as ``video_audio_order``), and
        the largest id of the piece laid out last (the eos follows it)."""
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
        return multimodal_rotary(position_ids, head_dim, self.cfg.theta, self.section(head_dim))
