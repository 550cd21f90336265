"""Several prompts' replies decoded together: each prompt is prefilled alone (its own
``ThinkerDecoder``, media and all), then their caches are padded on the left to one
length and every new token of every unfinished reply costs one batched step. A reply that
ends leaves the batch. Greedy replies are those of one prompt at a time."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from omnitrain.inference.thinker_decode import ThinkerDecoder, cached_step
from omnitrain.nn.kv_cache import KVCache


@torch.no_grad()
def decode_together(decoders: list[ThinkerDecoder], choose: Callable[[Tensor], Tensor], eos: int,
                    max_new_tokens: int) -> None:
    """Feed each decoder its reply until ``eos`` (fed too) or ``max_new_tokens``.
    ``choose``: (B, V) logits -> (B,) next tokens. The decoders' own caches are left
    behind (their states and Talker vectors are complete)."""
    model, spec = decoders[0].model, decoders[0].spec
    cache = KVCache.stack_left_padded([d.cache for d in decoders])
    active = list(range(len(decoders)))
    last = torch.cat([d.last for d in decoders])  # (B, D)
    for _ in range(max_new_tokens):
        tokens = choose(model.thinker.logits(last)).tolist()
        inputs = [decoders[i].next_inputs(int(t)) for i, t in zip(active, tokens, strict=True)]
        embeds = torch.cat([e for e, _ in inputs])
        text = torch.zeros(embeds.shape[:2], dtype=torch.bool, device=embeds.device)  # no media
        hidden, vectors = cached_step(model, spec, embeds, torch.cat([p for _, p in inputs], 1), cache, text)
        for row, i in enumerate(active):
            decoders[i].keep(hidden[row:row + 1], vectors[row:row + 1])
        going = [row for row, t in enumerate(tokens) if t != eos]
        if not going:
            return
        if len(going) < len(active):
            rows = torch.tensor(going, device=embeds.device)
            cache.keep_rows(rows)
            active = [active[r] for r in going]
            last = hidden[rows, -1]
        else:
            last = hidden[:, -1]
