"""TMRoPE: Qwen2.5-Omni's time-aligned multimodal rotary positions.

Ids follow ../shared/TMROPE.md and, where it differs, transformers'
``get_rope_index`` (released checkpoints were trained with it). Two such details are
kept on purpose:

* after a segment, the next id is 1 + the largest id of the *last piece laid out*
  (for a video with its audio: of its eos), not of the whole sequence;
* audio-in-video chunks advance by at most one per token (a jump in time of more than
  one chunk still moves to the next chunk only), as ``get_chunked_index`` does.

Ids are computed per segment with tensor ops; no loop runs over tokens.
``rope_index`` is a drop-in for transformers' ``get_rope_index``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from omnitrain.api import MultimodalRope, MultimodalRopeConfig, VideoSeg, register
from omnitrain.positions.from_ids import TokenIds, audio_tokens_from_frames, layouts_from_ids
from omnitrain.positions.pieces import chunk_index, same_on_rows, video_t_values, vision_ids


@dataclass
class TMRopeConfig(MultimodalRopeConfig):
    """``MultimodalRopeConfig`` (theta, mrope_section, mrope_interleaved, position_id_per_seconds) and:"""

    seconds_per_chunk: int = 2
    interleave: bool = True  # False: the ablation with the whole video body before the audio


@register("position", "tmrope", config=TMRopeConfig)
class TMRope(MultimodalRope):
    """Qwen2.5-Omni TMRoPE: absolute time (40 ms per id) on row 0, height and width on rows 1-2."""

    @property
    def per_chunk(self) -> int:
        return self.cfg.position_id_per_seconds * self.cfg.seconds_per_chunk

    def frame_times(self, seg: VideoSeg) -> np.ndarray:
        return video_t_values(seg.grid[0], seg.second_per_grid, self.cfg.position_id_per_seconds)

    def _chunk_order(self, seg: VideoSeg, t_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Permutation of [video tokens, audio tokens] into chunk order (video chunk j,
        then audio chunk j), and each stream's chunk indices."""
        v_chunk = chunk_index(np.repeat(t_values, seg.grid[1] * seg.grid[2]), self.per_chunk)
        a_chunk = chunk_index(np.arange(seg.audio_tokens), self.per_chunk)
        perm = np.argsort(np.concatenate([v_chunk * 2, a_chunk * 2 + 1]), kind="stable")
        return perm, v_chunk, a_chunk

    def video_audio_order(self, seg: VideoSeg) -> Tensor:
        """Interleave 2 s chunks: video chunk j, then audio chunk j (Qwen2.5-Omni)."""
        if not self.cfg.interleave:
            return super().video_audio_order(seg)
        perm, _, _ = self._chunk_order(seg, self.frame_times(seg))
        return torch.from_numpy(perm >= seg.tokens)

    def video_audio_body(self, start: int, seg: VideoSeg) -> tuple[np.ndarray, int]:
        # both streams start at the same id, so they line up in time
        t_values = self.frame_times(seg)
        video = vision_ids(start, seg.grid, t_values)
        audio = same_on_rows(np.arange(start, start + seg.audio_tokens))
        audio_max = start + seg.audio_tokens - 1
        if not self.cfg.interleave:
            return np.concatenate([video, audio], axis=1), audio_max
        perm, v_chunk, a_chunk = self._chunk_order(seg, t_values)
        body = np.concatenate([video, audio], axis=1)[:, perm]
        if int(a_chunk[-1]) >= int(v_chunk[-1]):  # audio chunk laid out last
            return body, audio_max
        return body, start + max(int(t_values[-1]), seg.grid[1] - 1, seg.grid[2] - 1)

    def audio_tokens(self, frames: int) -> int:
        """The audio encoder's tokens for ``frames`` mel frames (``rope_index`` reads
        ``audio_seqlens`` in frames): Qwen2.5-Omni's Whisper tower."""
        return audio_tokens_from_frames(frames)

    # ---- transformers compatibility ----------------------------------------------
    def rope_index(
        self,
        input_ids: Tensor,
        image_grid_thw: Tensor | None = None,
        video_grid_thw: Tensor | None = None,
        attention_mask: Tensor | None = None,
        use_audio_in_video: bool = False,
        audio_seqlens: Tensor | None = None,
        second_per_grids: Tensor | None = None,
        token_ids: TokenIds | Mapping[str, int] | None = None,
        spatial_merge_size: int = 2,
    ) -> tuple[Tensor, Tensor]:
        """Same inputs and outputs as transformers' Qwen2.5-Omni ``get_rope_index``:
        position ids (3, B, L) (padding holds 1) and decode deltas (B, 1).

        ``token_ids`` names the ids transformers reads from its config:
        ``{"image", "video", "audio", "vision_bos", "audio_bos"}``. Unlike transformers,
        ids whose counts disagree with the grids or audio lengths raise ``ValueError``.
        """
        B, L = input_ids.shape
        mask = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        if image_grid_thw is None and video_grid_thw is None:
            # transformers' text/audio-only branch: 1D positions from the mask, padding 1,
            # and the delta taken over the whole row including those fills
            pos = mask.long().cumsum(-1) - 1
            pos = pos.masked_fill(~mask, 1)
            deltas = pos.max(-1, keepdim=True).values + 1 - mask.sum(-1, keepdim=True)
            return pos[None].expand(3, -1, -1).to(input_ids.dtype), deltas
        if token_ids is None:
            raise ValueError("rope_index needs token_ids={'image', 'video', 'audio', 'vision_bos', 'audio_bos'}")
        spans = [_real_span(mask[b]) for b in range(B)]
        rows = [input_ids[b, sp] for b, sp in enumerate(spans)]
        layouts = layouts_from_ids(
            rows, image_grid_thw, video_grid_thw, use_audio_in_video, audio_seqlens,
            second_per_grids, TokenIds.of(token_ids), spatial_merge_size, self.audio_tokens,
        )
        position_ids = torch.ones(3, B, L, dtype=input_ids.dtype, device=input_ids.device)
        deltas = torch.empty(B, 1, dtype=torch.long, device=input_ids.device)
        for b, layout in enumerate(layouts):
            ids = self.position_ids(layout).to(position_ids)
            position_ids[:, b, spans[b]] = ids
            deltas[b, 0] = (int(ids.max()) + 1 if ids.numel() else 0) - ids.shape[1]
        return position_ids, deltas


def _real_span(mask_row: Tensor) -> slice | Tensor:
    """The real tokens of a row: a slice when padding is only on the left or the right
    (the usual case, and cheap), else the boolean mask itself."""
    real = mask_row.nonzero()
    if real.numel() == 0:
        return slice(0, 0)
    first, last = int(real[0]), int(real[-1])
    return slice(first, last + 1) if last - first + 1 == real.numel() else mask_row
