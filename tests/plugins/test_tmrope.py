"""TMRoPE ids on the rules of ../shared/TMROPE.md (transformers parity: issue 3)."""

from __future__ import annotations

import numpy as np
import torch

from omnitrain.positions.layout import AudioSeg, ImageSeg, TextSeg, VideoSeg
from omnitrain.positions.pieces import chunk_index
from omnitrain_plugins.qwen_omni.tmrope import TMRope, TMRopeConfig
from omnitrain_plugins.rope1d import Rope1d, Rope1dConfig


def ids(*layout, **cfg):
    return TMRope(TMRopeConfig(**cfg)).position_ids(list(layout)).tolist()


def test_worked_example():
    # text "a b", image grid (1, 4, 4) patches -> (1, 2, 2) tokens, text "c"
    assert ids(TextSeg(2), ImageSeg((1, 2, 2)), TextSeg(1)) == [
        [0, 1, 2, 3, 3, 3, 3, 5, 6],
        [0, 1, 2, 3, 3, 4, 4, 5, 6],
        [0, 1, 2, 3, 4, 3, 4, 5, 6],
    ]


def test_text_and_audio_equal_1d_positions():
    out = torch.tensor(ids(TextSeg(3), AudioSeg(5), TextSeg(2)))
    assert (out == torch.arange(out.shape[1])).all()


def test_video_time_row_uses_seconds():
    out = ids(VideoSeg((3, 1, 1), second_per_grid=0.5))
    assert out[0] == [0, 1, 1 + 12, 1 + 25, 27]  # floor(t * 0.5 * 25)


def test_audio_in_video_interleaves_two_second_chunks():
    seg = VideoSeg((3, 1, 1), second_per_grid=1.0, audio_tokens=80)
    out = torch.tensor(ids(seg))
    body = out[0, 2:-2]
    order = TMRope(TMRopeConfig()).video_audio_order(seg)
    video_t, audio_t = body[~order], body[order]
    assert video_t.tolist() == [1, 26, 51]
    assert audio_t.tolist() == list(range(1, 81))
    # chunk order: video t<50, audio <50, video 50-99, audio 50-99
    assert order.int().tolist() == [0, 0] + [1] * 50 + [0] + [1] * 30
    assert out[:, 0].tolist() == out[:, 1].tolist() == [0, 0, 0]  # both bos share one id
    assert out[0, -1] == out[0, -2] == 81


def test_no_interleave_ablation_puts_video_first():
    seg = VideoSeg((3, 1, 1), 1.0, 80)
    order = TMRope(TMRopeConfig(interleave=False)).video_audio_order(seg)
    assert order.int().tolist() == [0, 0, 0] + [1] * 80


def test_chunks_advance_once_per_token_like_transformers():
    assert chunk_index(np.array([0, 0, 75, 75, 150, 150]), 50).tolist() == [0, 0, 1, 1, 2, 3]


def test_rotary_with_one_row_equals_rope1d():
    """When all three rows agree (text), TMRoPE rotates exactly like 1D RoPE."""
    pos = torch.arange(7)[None, None].expand(3, 2, 7)
    c3, s3 = TMRope(TMRopeConfig()).rotary(pos, 32)
    c1, s1 = Rope1d(Rope1dConfig()).rotary(pos[:1], 32)
    assert torch.equal(c3, c1) and torch.equal(s3, s1)  # measured 0: bit-identical
