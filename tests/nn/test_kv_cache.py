"""Prompts decoding together: caches padded on the left, their padding hidden. Two
prompts' next tokens attend exactly as each does alone (float64, to the last bit that
matters), and a finished row leaves the batch."""

from __future__ import annotations

import torch

from omnitrain.nn.attention import Attention
from omnitrain.nn.kv_cache import KVCache


def alone_then_together(attn: Attention, prompts: list[torch.Tensor], new: torch.Tensor):
    alone, caches = [], []
    for i, p in enumerate(prompts):
        cache = KVCache()
        attn(p, cache.step_mask(p.shape[1], p.device), cache=cache)
        caches.append(cache)
        mine = KVCache.stack_left_padded([cache])  # a copy: ``cache`` joins the batch below
        alone.append(attn(new[i:i + 1], mine.step_mask(1, new.device), cache=mine))
    batch = KVCache.stack_left_padded(caches)
    together = attn(new, batch.step_mask(1, new.device), cache=batch)
    return torch.cat(alone), together, batch


def test_left_padded_prompts_attend_as_each_does_alone():
    torch.manual_seed(0)
    attn = Attention(24, 4, 2).double()
    prompts = [torch.randn(1, n, 24, dtype=torch.float64) for n in (5, 2, 3)]
    alone, together, batch = alone_then_together(attn, prompts, torch.randn(3, 1, 24, dtype=torch.float64))
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-14)
    assert batch.key_mask.tolist() == [[True] * 6, [False] * 3 + [True] * 3, [False, False] + [True] * 4]


def test_a_finished_row_leaves_and_the_rest_go_on():
    torch.manual_seed(1)
    attn = Attention(24, 4, 2).double()
    prompts = [torch.randn(1, n, 24, dtype=torch.float64) for n in (4, 1)]
    _, _, batch = alone_then_together(attn, prompts, torch.randn(2, 1, 24, dtype=torch.float64))
    x = torch.randn(2, 1, 24, dtype=torch.float64)
    single = KVCache()
    single.layers, single.key_mask = dict(batch.layers), batch.key_mask.clone()
    single.keep_rows(torch.tensor([1]))
    before = attn(x[1:], single.step_mask(1, x.device), cache=single)
    batch.keep_rows(torch.tensor([1]))
    assert batch.key_mask.shape == (1, 5) and batch.layers[0][0].shape[0] == 1
    torch.testing.assert_close(attn(x[1:], batch.step_mask(1, x.device), cache=batch), before, rtol=0, atol=0)


def test_one_unpadded_prompt_needs_no_mask_for_one_token():
    cache = KVCache()
    assert cache.step_mask(1, torch.device("cpu")) is None
    assert cache.step_mask(3, torch.device("cpu")).shape == (1, 1, 3, 3)
