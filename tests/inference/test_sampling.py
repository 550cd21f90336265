"""Talker sampling = transformers' logits processors (Qwen2.5-Omni's talker defaults)."""

from __future__ import annotations

import pytest
import torch

from omnitrain.inference.sampling import filter_logits, sample_next

transformers = pytest.importorskip("transformers")


def test_filter_matches_transformers_processors():
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        SuppressTokensLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    history = torch.randint(0, 50, (3, 12))
    hf = LogitsProcessorList([
        RepetitionPenaltyLogitsProcessor(1.05), SuppressTokensLogitsProcessor([7], device="cpu"),
        TemperatureLogitsWarper(0.9), TopKLogitsWarper(40), TopPLogitsWarper(0.8),
    ])(history, logits.clone())
    ours = filter_logits(logits, 0.9, 40, 0.8, 1.05, history, [7])
    assert torch.equal(ours, hf)  # the same -inf entries; measured 0 on the others: bit-identical


def test_penalty_and_suppression_change_the_greedy_choice():
    logits = torch.tensor([[2.0, 1.99, 0.0, -1.0]])
    assert sample_next(logits).item() == 0
    assert sample_next(logits, repetition=1.05, history=torch.tensor([[0]])).item() == 1
    assert sample_next(logits, suppress=[0, 1]).item() == 2
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(50)}
    assert draws == {0, 1}
