"""The varlen plan: documents found on the host, the path ``DocAttention.build`` picks, and
the emulated varlen attention against causal attention over each document by hand."""

from __future__ import annotations

import math

import pytest
import torch

from omnitrain.nn.masks import doc_causal_mask
from omnitrain.nn.varlen import DocAttention, DocRuns, doc_runs, varlen_attention, varlen_available


def by_hand(q, k, v, doc_ids):
    """(B, H, L, D) causal softmax attention inside each document, K/V head h // group for
    query head h; padding rows 0."""
    B, H, L, D = q.shape
    group = H // k.shape[1]
    out = torch.zeros_like(q)
    for b in range(B):
        for d in doc_ids[b].unique().tolist():
            if d == 0:
                continue
            at = (doc_ids[b] == d).nonzero()[:, 0]
            n = at.numel()
            for h in range(H):
                qi, ki, vi = q[b, h, at], k[b, h // group, at], v[b, h // group, at]
                scores = (qi @ ki.T / math.sqrt(D)).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), -math.inf)
                out[b, h, at] = scores.softmax(-1) @ vi
    return out


@pytest.mark.parametrize("docs", [
    torch.tensor([[1] * 3 + [2] * 4 + [0] * 2, [1] * 5 + [2] * 2 + [3] * 2]),  # padding
    torch.tensor([[1] * 4 + [2] * 5, [3] * 2 + [1] * 7]),  # no padding, several per row
    torch.tensor([[1, 1, 2, 2]]),  # as many tokens as query heads
    torch.tensor([[1, 2]]),  # as many tokens as K/V heads
])
def test_emulated_varlen_equals_causal_attention_per_document(docs):
    torch.manual_seed(0)
    B, L = docs.shape
    q = torch.randn(B, 4, L, 8, dtype=torch.float64)
    k, v = torch.randn(B, 2, L, 8, dtype=torch.float64), torch.randn(B, 2, L, 8, dtype=torch.float64)
    plan = DocAttention.build(docs, "varlen", doc_runs(docs))
    assert plan.emulate and plan.mask is None and plan.cu_seqlens is plan.runs.cu_seqlens
    got = varlen_attention(q, k, v, plan)
    torch.testing.assert_close(got, by_hand(q, k, v, docs), rtol=0, atol=1e-15)  # measured 4.4e-16


def test_build_picks_the_path():
    docs = torch.tensor([[1, 1, 2, 0], [1, 1, 1, 1]])
    dense = DocAttention.build(docs)  # auto on the CPU: the dense mask
    assert torch.equal(dense.mask, doc_causal_mask(docs)) and dense.runs is None and dense.cu_seqlens is None
    found = DocAttention.build(docs, "varlen")  # no runs from collate: found here
    assert found.cu_seqlens.tolist() == [0, 2, 3, 7] and found.runs.max_len == 4
    assert found.runs.token_index.tolist() == [0, 1, 2, 4, 5, 6, 7] and found.emulate
    with pytest.raises(ValueError, match="auto, dense or varlen"):
        DocAttention.build(docs, "flash")
    assert not varlen_available()  # no CUDA here


def test_doc_runs_edge_cases_and_moving():
    empty = doc_runs(torch.zeros(2, 3, dtype=torch.long))
    assert empty.cu_seqlens.tolist() == [0] and empty.max_len == 0 and empty.token_index.numel() == 0
    assert empty.cu_seqlens.dtype == torch.int32
    runs = doc_runs(torch.tensor([[0, 5, 5, 0, 5]]))  # a document id reused after padding: two documents
    assert runs.cu_seqlens.tolist() == [0, 2, 3] and runs.token_index.tolist() == [1, 2, 4]
    moved = runs.to("cpu")
    assert moved.cu_seqlens.tolist() == [0, 2, 3] and moved.token_index.tolist() == [1, 2, 4]
    assert (moved.max_len, moved.shape) == (2, (1, 5))
    whole = DocRuns(torch.tensor([0, 4], dtype=torch.int32), 4, None, (1, 4)).to("cpu")
    assert whole.token_index is None and whole.one_per_row


def test_the_kernel_path_needs_half_precision():
    """A plan with runs takes the FlashAttention kernel unless told to emulate it."""
    docs = torch.tensor([[1, 1, 2]])
    plan = DocAttention(runs=doc_runs(docs))
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="fp16/bf16"):
        varlen_attention(q, q, q, plan)
