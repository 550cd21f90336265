"""The one replier: prompts decoding together give the greedy replies of one prompt at a
time (text tokens and the Talker's codes), with media prompts of different lengths,
uneven chunks and replies that end at different steps; a Thinker that cannot decode
several prompts at once (``batched_step`` False) is served one at a time."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.inference.prompts import user_turn
from omnitrain.inference.replier import GenerateError, Replier
from omnitrain.model.omni_model import OmniModel

pytestmark = pytest.mark.slow


def heldout_prompts(demo_dir) -> list[dict]:
    folder = demo_dir / "heldout"
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    return [user_turn(r["text"], *(str(folder / r[k]) if r.get(k) else None for k in ("audio", "image", "video")))
            for r in rows]


def replies(model, cfg, prompts, batch_size: int, steps: list[int], eos: int | None = None):
    replier = Replier(model, cfg.generate, SampleBuilder.from_config(cfg), batch_size=batch_size)
    replier.eos = replier.eos if eos is None else eos
    step = model.thinker.step

    def counted(embeds, *args, **kwargs):
        steps.append(embeds.shape[0])
        return step(embeds, *args, **kwargs)

    model.thinker.step = counted
    try:
        examples = [replier.prompt(p) for p in prompts]
        return replier.replies(examples, [replier.condition()] * len(examples))
    finally:
        del model.thinker.step


def test_batched_greedy_replies_are_those_of_one_prompt_at_a_time(smoke_trained, demo_dir):
    cfg, module, _ = smoke_trained
    model, prompts = module.model.eval(), heldout_prompts(demo_dir)
    one_steps, batch_steps = [], []
    alone = replies(model, cfg, prompts, 1, one_steps)
    together = replies(model, cfg, prompts, 3, batch_steps)  # 8 prompts: chunks of 3, 3, 2
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a.codec_tokens, b.codec_tokens) and a.codec_tokens.numel() > 0
        torch.testing.assert_close(a.mel, b.mel, rtol=0, atol=0)  # the same seeded noise; waves: Griffin-Lim draws phases
    assert max(batch_steps) == 3 and set(one_steps) == {1}  # prompts did decode together
    assert len(batch_steps) < len(one_steps)


def test_an_untrained_model_too_with_replies_ending_at_different_steps(smoke_cfg):
    """Random weights (near-tied logits: the hard case for equal greedy replies), an end
    token that comes at different steps (rows leave the batch as they finish), and the
    fallback: a Thinker that does not declare ``batched_step`` decodes one prompt at a time."""
    torch.manual_seed(0)
    model = OmniModel(smoke_cfg).eval()
    prompts = [user_turn(t) for t in ("Say 1 2 3.", "Hi", "What are the digits 4 5 6 7 8 9?", "Ok?", "7")]
    cfg = smoke_cfg.replace(generate=dataclasses.replace(smoke_cfg.generate, max_new_tokens=12))
    free = [r.token_ids for r in replies(model, cfg, prompts, 1, [])]
    # the end: a token the replies say first at different steps
    firsts = {t: {ids.index(t) if t in ids else None for ids in free} for ids in free for t in ids}
    eos = max(firsts, key=lambda t: len(firsts[t]))
    alone = replies(model, cfg, prompts, 1, [], eos)
    assert len({len(r.token_ids) for r in alone}) >= 3, firsts[eos]
    batch_steps: list[int] = []
    assert [r.token_ids for r in replies(model, cfg, prompts, 4, batch_steps, eos)] == [r.token_ids for r in alone]
    assert max(batch_steps) == 4 and len(set(batch_steps)) > 2  # 4 rows, fewer as they end, then the fifth alone
    model.thinker.batched_step = False
    fallback_steps: list[int] = []
    assert [r.token_ids for r in replies(model, cfg, prompts, 4, fallback_steps, eos)] == [r.token_ids for r in alone]
    assert set(fallback_steps) == {1}


def test_a_batch_size_below_one_is_refused(smoke_cfg):
    with pytest.raises(GenerateError, match="batch size must be at least 1"):
        Replier(OmniModel(smoke_cfg), smoke_cfg.generate, SampleBuilder.from_config(smoke_cfg), batch_size=0)
