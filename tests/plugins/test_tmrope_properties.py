"""Properties of TMRoPE ids on many random layouts (rules of ../shared/TMROPE.md)."""

from __future__ import annotations

import random

from omnitrain.positions.layout import AudioSeg, ImageSeg, TextSeg, VideoSeg
from omnitrain_plugins.mrope import MRope, MRopeConfig
from omnitrain_plugins.qwen_omni.tmrope import TMRope, TMRopeConfig

SCHEME = TMRope(TMRopeConfig())


def random_layout(rng: random.Random, max_spg: float = 2.0):
    layout = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice("tavi")
        if kind == "t":
            layout.append(TextSeg(rng.randint(1, 5)))
        elif kind == "a":
            layout.append(AudioSeg(rng.randint(1, 120)))
        elif kind == "i":
            layout.append(ImageSeg((1, rng.randint(1, 4), rng.randint(1, 4))))
        else:
            audio = rng.choice([0, rng.randint(1, 200)])
            spg = rng.uniform(0.2, max_spg)
            layout.append(VideoSeg((rng.randint(1, 8), rng.randint(1, 3), rng.randint(1, 3)), spg, audio))
    return layout


def spans(layout):
    start = 0
    for seg in layout:
        yield seg, start
        start += seg.span


def test_text_and_audio_ids_step_by_one_on_every_row():
    rng = random.Random(0)
    for _ in range(300):
        layout = random_layout(rng)
        ids = SCHEME.position_ids(layout)
        assert ids.shape == (3, sum(s.span for s in layout)) and int(ids[:, 0].min()) == 0
        for seg, start in spans(layout):
            if isinstance(seg, TextSeg | AudioSeg):
                part = ids[:, start : start + seg.span]
                assert (part.diff(dim=1) == 1).all() and (part[0] == part[1]).all() and (part[1] == part[2]).all()


def test_video_time_row_is_monotone_and_space_rows_are_the_grid():
    rng = random.Random(1)
    for _ in range(300):
        layout = random_layout(rng)
        ids = SCHEME.position_ids(layout)
        for seg, start in spans(layout):
            if not isinstance(seg, VideoSeg | ImageSeg):
                continue
            edge = 2 if getattr(seg, "audio_tokens", 0) else 1  # bos/eos tokens on each side
            body = ids[:, start + edge : start + seg.span - edge]
            if isinstance(seg, VideoSeg) and seg.audio_tokens:
                body = body[:, ~SCHEME.video_audio_order(seg)]
            first = int(ids[0, start]) + 1
            t, h, w = seg.grid
            assert (body[0].diff() >= 0).all()
            assert body[1].min() == first and body[1].max() == first + h - 1
            assert body[2].min() == first and body[2].max() == first + w - 1


def test_audio_and_video_align_within_40ms():
    """The frame group starting at s seconds has the same time id as the audio token at s."""
    rng = random.Random(2)
    checked = 0
    for _ in range(300):
        for seg, _start in spans(random_layout(rng)):
            if not (isinstance(seg, VideoSeg) and seg.audio_tokens):
                continue
            ids = SCHEME.position_ids([seg])[0, 2:-2]
            order = SCHEME.video_audio_order(seg)
            video, audio = ids[~order], ids[order]
            per_frame = seg.grid[1] * seg.grid[2]
            for t in range(seg.grid[0]):
                k = int(t * seg.second_per_grid / 0.04 + 1e-6)  # audio token at that time
                if k < seg.audio_tokens:
                    assert abs(int(video[t * per_frame]) - int(audio[k])) <= 1
                    checked += 1
    assert checked > 200


def test_chunks_come_in_order_video_before_audio():
    rng = random.Random(3)
    seen = 0
    for _ in range(300):
        for seg, _start in spans(random_layout(rng, max_spg=2.0)):
            if not (isinstance(seg, VideoSeg) and seg.audio_tokens):
                continue
            ids = SCHEME.position_ids([seg])
            base = int(ids[0, 0]) + 1
            body_t = ids[0, 2:-2]
            is_audio = SCHEME.video_audio_order(seg)
            chunk = (body_t - base) // 50
            key = chunk * 2 + is_audio.long()
            assert (key.diff() >= 0).all(), "chunk j video, chunk j audio, chunk j+1 video, ..."
            seen += 1
    assert seen > 50


def test_both_bos_and_both_eos_share_an_id():
    ids = SCHEME.position_ids([TextSeg(2), VideoSeg((2, 2, 2), 1.0, 30), TextSeg(1)])
    assert (ids[:, 2] == ids[:, 3]).all() and (ids[:, -3] == ids[:, -2]).all()
    assert int(ids[0, -1]) == int(ids[0, -2]) + 1


def test_mrope_time_is_the_frame_index_and_audio_follows_video():
    seg = VideoSeg((3, 1, 1), second_per_grid=1.7, audio_tokens=4)
    scheme = MRope(MRopeConfig())
    ids = scheme.position_ids([seg])
    assert ids[0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert not scheme.video_audio_order(seg)[:3].any()  # no interleaving


def test_bad_layouts_name_the_segment():
    import pytest

    for seg, needle in [(VideoSeg((2, 2, 2), 0.0), "second_per_grid"), (AudioSeg(0), "at least one token"),
                        (ImageSeg((1, 0, 2)), "three positive sizes")]:
        with pytest.raises(ValueError, match=needle) as err:
            SCHEME.position_ids([TextSeg(1), seg])
        assert "segment 1" in str(err.value)
