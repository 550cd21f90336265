"""TMRoPE: Qwen2.5-Omni's time-aligned multimodal rotary positions.

Ids follow ../shared/TMROPE.md and, where it differs, transformers'
``Qwen2_5OmniPreTrainedModelForConditionalGeneration.get_rope_index`` (released
checkpoints were trained with it). Two such details, kept on purpose:

* after a segment, the next id is 1 + the largest id of the *last piece laid out*
  (for a video with its audio: of its eos), not of the whole sequence;
* audio-in-video chunks advance by at most one per token (a jump in time of more than
  one chunk still moves to the next chunk only), as ``get_chunked_index`` does.

Ids are computed per segment with tensor ops; there is no loop over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.layout import AudioSeg, ImageSeg, Segment, TextSeg, VideoSeg
from omnitrain.nn.rotary import default_section, multimodal_rotary
from omnitrain.registry import register
from omnitrain.slots import PositionScheme


@dataclass
class TMRopeConfig:
    theta: float = 1000000.0
    mrope_section: list[int] | None = None  # None: 2:3:3 split of head_dim/2
    position_id_per_seconds: int = 25
    seconds_per_chunk: int = 2
    interleave: bool = True  # False: the ablation with the whole video before the audio


def _same_on_rows(ids: Tensor) -> Tensor:
    return ids[None].expand(3, -1)


def vision_ids(start: int, grid: tuple[int, int, int], t_values: Tensor) -> Tensor:
    """(3, t*h*w) body ids in row-major (t, y, x) order."""
    t, h, w = grid
    tt = t_values.view(t, 1, 1).expand(t, h, w).reshape(-1)
    yy = torch.arange(h).view(1, h, 1).expand(t, h, w).reshape(-1)
    xx = torch.arange(w).view(1, 1, w).expand(t, h, w).reshape(-1)
    return torch.stack([tt, yy, xx]) + start


def video_t_values(grid_t: int, second_per_grid: float, per_second: int) -> Tensor:
    """Temporal ids of each frame group, truncated in float32 like transformers."""
    spg = torch.tensor(second_per_grid, dtype=torch.float32)
    return (torch.arange(grid_t) * spg * per_second).long()


def chunk_index(values: Tensor, chunk: int) -> Tensor:
    """Chunk of each (non-decreasing) temporal value, advancing at most one per token.

    The recurrence c_i = min(floor(v_i / chunk), c_{i-1} + 1), c_0 = 0, in closed form.
    """
    if values.numel() == 0:
        return values
    steps = torch.arange(values.numel())
    return steps + torch.cummin(values // chunk - steps, dim=0).values.clamp_max(0)


@register("position", "tmrope", config=TMRopeConfig)
class TMRope(PositionScheme):
    """Qwen2.5-Omni TMRoPE: absolute time (40 ms per id) on row 0, height and width on rows 1-2."""

    rows = 3

    def __init__(self, cfg: TMRopeConfig) -> None:
        super().__init__()
        self.cfg = cfg

    # ---- ids -------------------------------------------------------------------
    def position_ids(self, layout: list[Segment]) -> Tensor:
        pieces: list[Tensor] = []
        nxt = 0
        for seg in layout:
            if isinstance(seg, TextSeg):
                pieces.append(_same_on_rows(torch.arange(nxt, nxt + seg.n)))
                nxt += seg.n
            elif isinstance(seg, AudioSeg):
                pieces.append(_same_on_rows(torch.arange(nxt, nxt + seg.n + 2)))
                nxt += seg.n + 2
            elif isinstance(seg, ImageSeg):
                t_values = torch.arange(seg.grid[0]) * self.cfg.position_id_per_seconds
                nxt = self._vision(pieces, nxt, seg.grid, t_values)
            elif isinstance(seg, VideoSeg):
                t_values = video_t_values(
                    seg.grid[0], seg.second_per_grid, self.cfg.position_id_per_seconds
                )
                if seg.audio_tokens:
                    nxt = self._video_with_audio(pieces, nxt, seg, t_values)
                else:
                    nxt = self._vision(pieces, nxt, seg.grid, t_values)
            else:
                raise TypeError(f"unknown segment {seg!r}")
        if not pieces:
            return torch.zeros(3, 0, dtype=torch.long)
        return torch.cat(pieces, dim=1)

    def _vision(self, pieces: list[Tensor], nxt: int, grid, t_values: Tensor) -> int:
        body = vision_ids(nxt + 1, grid, t_values)
        eos = int(body.max()) + 1
        pieces += [_same_on_rows(torch.tensor([nxt])), body, _same_on_rows(torch.tensor([eos]))]
        return eos + 1

    def _video_with_audio(self, pieces: list[Tensor], nxt: int, seg: VideoSeg, t_values) -> int:
        start = nxt + 1
        video = vision_ids(start, seg.grid, t_values)
        audio = _same_on_rows(torch.arange(start, start + seg.audio_tokens))
        is_audio = self.video_audio_order(seg)
        body = torch.empty(3, is_audio.numel(), dtype=torch.long)
        body[:, ~is_audio] = video
        body[:, is_audio] = audio
        if self.cfg.interleave:
            per_chunk = self.cfg.position_id_per_seconds * self.cfg.seconds_per_chunk
            v_chunks = int(chunk_index(video[0] - start, per_chunk)[-1]) + 1
            a_chunks = int(chunk_index(audio[0] - start, per_chunk)[-1]) + 1
            last = audio if a_chunks >= v_chunks else video[:, self._last_chunk(video, start)]
        else:
            last = audio
        eos = int(last.max()) + 1
        bos_pair = _same_on_rows(torch.tensor([nxt, nxt]))
        pieces += [bos_pair, body, _same_on_rows(torch.tensor([eos, eos]))]
        return eos + 1

    def _last_chunk(self, video: Tensor, start: int) -> Tensor:
        per_chunk = self.cfg.position_id_per_seconds * self.cfg.seconds_per_chunk
        chunks = chunk_index(video[0] - start, per_chunk)
        return chunks == chunks[-1]

    def video_audio_order(self, seg: VideoSeg) -> Tensor:
        """Interleave 2 s chunks, video chunk j before audio chunk j (Qwen2.5-Omni)."""
        if not self.cfg.interleave:
            return super().video_audio_order(seg)
        per_chunk = self.cfg.position_id_per_seconds * self.cfg.seconds_per_chunk
        t_values = video_t_values(seg.grid[0], seg.second_per_grid, self.cfg.position_id_per_seconds)
        h, w = seg.grid[1], seg.grid[2]
        v_chunk = chunk_index(t_values.repeat_interleave(h * w), per_chunk)
        a_chunk = chunk_index(torch.arange(seg.audio_tokens), per_chunk)
        keys = torch.cat([v_chunk * 2, a_chunk * 2 + 1])
        order = torch.sort(keys, stable=True).indices
        return (order >= v_chunk.numel())

    # ---- rotation --------------------------------------------------------------
    def section(self, head_dim: int) -> list[int]:
        return list(self.cfg.mrope_section or default_section(head_dim, self.rows))

    def check_head_dim(self, head_dim: int) -> None:
        super().check_head_dim(head_dim)
        if sum(self.section(head_dim)) != head_dim // 2:
            raise ValueError(
                f"position.mrope_section={self.section(head_dim)} sums to "
                f"{sum(self.section(head_dim))}, but the attention head_dim {head_dim} needs "
                f"{head_dim // 2} (e.g. [16, 24, 24] for head_dim 128). Set position.mrope_section."
            )

    def rotary(self, position_ids: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
        return multimodal_rotary(position_ids, head_dim, self.cfg.theta, self.section(head_dim))
