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
