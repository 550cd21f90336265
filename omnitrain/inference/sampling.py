"""Next-token choice for any autoregressive slot: greedy, or temperature/top-k/top-p, with
an optional repetition penalty (the logits processors of Qwen2.5-Omni's talker defaults)."""

from __future__ import annotations

import torch
from torch import Tensor


def repetition_penalty(logits: Tensor, history: Tensor, penalty: float) -> Tensor:
    """Make every id in ``history`` (B, H) less likely: positive logits are divided by
    ``penalty``, negative ones multiplied (CTRL / transformers' convention)."""
    if penalty == 1.0 or history.numel() == 0:
        return logits
    seen = logits.gather(-1, history)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(-1, history, seen)


def filter_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition: float = 1.0,
    history: Tensor | None = None,
    suppress: list[int] | None = None,
) -> Tensor:
    """The logits a sample is drawn from, in transformers' order: repetition penalty,
    suppressed ids, temperature, top-k, top-p (removed ids get -inf)."""
    if history is not None:
        logits = repetition_penalty(logits, history, repetition)
    if suppress:
        logits = logits.clone()
        logits[:, suppress] = float("-inf")
    if temperature > 0:
        logits = logits / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest set reaching top_p
        logits = logits.scatter(-1, idx, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def sample_next(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    repetition: float = 1.0,
    history: Tensor | None = None,
    suppress: list[int] | None = None,
) -> Tensor:
    """(B, V) -> (B,): argmax when ``temperature`` is 0 (after the penalty and suppressed
    ids), else a sample from ``filter_logits``."""
    if temperature <= 0:
        return filter_logits(logits, 0.0, 0, 1.0, repetition, history, suppress).argmax(-1)
    logits = filter_logits(logits, temperature, top_k, top_p, repetition, history, suppress)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
