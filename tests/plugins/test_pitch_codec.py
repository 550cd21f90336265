from __future__ import annotations

import torch

from omnitrain_plugins.pitch_codec import PitchCodec, PitchCodecConfig


def test_tokens_survive_decode_then_encode():
    codec = PitchCodec(PitchCodecConfig())
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        tokens = torch.randint(0, codec.vocab_size, (25,), generator=g)
        tokens[tokens % 5 == 0] = 0  # silences between voiced frames
        assert torch.equal(codec.encode(codec.decode(tokens)), tokens)


def test_silence_is_token_zero_and_rate_is_25_hz():
    codec = PitchCodec(PitchCodecConfig())
    assert codec.frame_rate == 25
    assert codec.encode(torch.zeros(16000)).tolist() == [0] * 25


def test_pitch_groups_residuals_refine_the_pitch_and_survive_decode_then_encode():
    from omnitrain_plugins.pitch_groups_codec import PitchGroupsCodec, PitchGroupsConfig

    codec = PitchGroupsCodec(PitchGroupsConfig(groups=3))
    base = PitchCodec(PitchCodecConfig())
    # a tone a quarter semitone above semitone 10: group 0 says 10, group 1 the quarter
    t = torch.arange(16000) / 16000
    hz = float(base.semitone_hz(10.25))
    codes = codec.encode(0.2 * torch.sin(2 * torch.pi * hz * t))
    assert codes.shape == (25, 3) and torch.equal(codes[:, 0], base.encode(0.2 * torch.sin(2 * torch.pi * hz * t)))
    assert ((codes[:, 0] - 1) // 2 == 10).all() and (codes[:, 1] == 3).all()  # +1 quarter: code 2 + 1
    g = torch.Generator().manual_seed(0)
    frames = torch.stack([torch.randint(1, codec.vocab_size, (25,), generator=g),
                          torch.randint(1, 4, (25,), generator=g), torch.full((25,), 2)], -1)  # +-1/4 semitone
    frames[::6] = torch.tensor([0, 2, 2])  # silences
    assert torch.equal(codec.encode(codec.decode(frames))[:, :2], frames[:, :2])
