"""``talker=prefix`` with several voices hears whose reply it speaks (a learned speaker
vector first), so codes that carry the voice are spoken in the one asked for; with one
voice it is the plain baseline (no speaker vector)."""

from __future__ import annotations

import torch

from omnitrain.registry import build
from omnitrain.run_config import compose_config
from omnitrain.slots import TalkerContext


def talker(speakers: int):
    cfg = compose_config(["size=tiny"])
    torch.manual_seed(0)
    return build("talker", cfg.talker, thinker_hidden_size=16, codec_vocab_size=20, num_speakers=speakers)


def context(speaker: list[int]) -> TalkerContext:
    n = len(speaker)
    reply = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(1)).expand(n, 4, 16)
    ones = torch.ones(n, 4, dtype=torch.bool)
    return TalkerContext(reply, ones, reply, ones, torch.zeros(3, n, 4, dtype=torch.long),
                         torch.tensor(speaker))


def test_the_speaker_changes_what_it_says_and_is_trained():
    t = talker(3)
    codes = torch.randint(0, 20, (1, 6)).expand(3, 6)
    logits = t(context([0, 1, 2]), codes, torch.ones_like(codes, dtype=torch.bool))
    assert logits.shape == (3, 6, t.vocab_size)
    assert not torch.allclose(logits[0], logits[1]) and not torch.allclose(logits[1], logits[2])
    logits.sum().backward()
    assert t.speaker_embed.weight.grad.abs().sum(-1).gt(0).all()  # every voice's vector learns


def test_one_voice_is_the_plain_baseline():
    t = talker(1)
    assert t.speaker_embed is None
    codes = torch.randint(0, 20, (1, 6)).expand(2, 6)
    a = t(context([0, 0]), codes, torch.ones_like(codes, dtype=torch.bool))
    assert torch.allclose(a[0], a[1])
