"""Qwen3-Omni's time-aligned multimodal rotary positions, following transformers'
``Qwen3OmniMoe...get_rope_index``: Qwen2.5-Omni's TMRoPE rules (``plugins/qwen_omni/tmrope.py``,
../shared/TMROPE.md) with three differences:

* a video's own audio is merged with its frames on time, token by token (a frame group's
  tokens go before the audio tokens of the same or a later id), not in 2 s chunks;
* ``position_id_per_seconds`` is 13 (one id per AuT token: 80 ms) and audio clips count
  AuT's tokens (``aut_token_count``);
* the frequencies are interleaved (``mrope_interleaved``, mrope_section [24, 20, 20] at head_dim 128);
* a video's two opening tokens take two consecutive ids (not one shared id), as do its two
  closing ones.

After a video with its audio the next id is, as there, 1 + the largest id of the piece
laid out last: the trailing run of video tokens (all three rows) or of audio tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from omnitrain.api import VideoSeg, register
from omnitrain.positions.pieces import same_on_rows, vision_ids
from omnitrain_plugins.qwen3_omni.aut_audio import aut_token_count
from omnitrain_plugins.qwen_omni.tmrope import TMRope, TMRopeConfig


@dataclass
class Qwen3RopeConfig(TMRopeConfig):
    """``TMRopeConfig`` with Qwen3-Omni's values (``seconds_per_chunk`` and ``interleave``
    are unused: there are no chunks) and:"""

    position_id_per_seconds: int = 13
    mrope_interleaved: bool = True
    audio_n_window: int = 50  # the AuT encoder's n_window: its tokens per clip (rope_index)


@register("position", "qwen3_tmrope", config=Qwen3RopeConfig)
class Qwen3Rope(TMRope):
    """Qwen3-Omni: TMRoPE ids with a video's audio merged on time token by token."""

    def _merged(self, seg: VideoSeg, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(video ids (3, V), audio ids (3, A), the merged order over [video, audio])."""
        video = vision_ids(start, seg.grid, self.frame_times(seg))
        audio = same_on_rows(np.arange(start, start + seg.audio_tokens))
        # a merge of two sorted lists, the video's token first on a tie: a stable sort on
        # (time, which list)
        key = np.concatenate([video[0] * 2, audio[0] * 2 + 1])
        return video, audio, np.argsort(key, kind="stable")

    def _video_with_audio(self, ids, seg: VideoSeg) -> None:
        """<vision_bos><audio_bos> take two consecutive ids (Qwen2.5-Omni: one shared id),
        the body starts after them, and <audio_eos><vision_eos> take the two after its last piece."""
        bos = ids.text(2)
        body, last_max = self.video_audio_body(bos + 2, seg)
        ids.body(body)
        ids.restart(last_max + 1)
        ids.text(2)

    def video_audio_order(self, seg: VideoSeg) -> Tensor:
        _, _, order = self._merged(seg, 0)
        return torch.from_numpy(order >= seg.tokens)

    def video_audio_body(self, start: int, seg: VideoSeg) -> tuple[np.ndarray, int]:
        video, audio, order = self._merged(seg, start)
        body = np.concatenate([video, audio], axis=1)[:, order]
        is_audio = order >= seg.tokens
        last = is_audio[-1]
        run = len(is_audio) - (np.flatnonzero(is_audio != last)[-1] + 1 if (is_audio != last).any() else 0)
        return body, int(body[:, -run:].max())

    def audio_tokens(self, frames: int) -> int:
        return aut_token_count(frames, self.cfg.audio_n_window)
