"""Every attention path computes the same thing: native grouped-query attention equals
repeating K/V, the causal shortcut and the varlen plan equal the dense document mask, and a
packed row equals its documents run one by one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from omnitrain.nn.attention import Attention
from omnitrain.nn.masks import doc_causal_mask
from omnitrain.nn.varlen import DocAttention, doc_runs


def repeat_reference(attn: Attention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The pre-GQA computation: K/V heads repeated to the query heads, then SDPA."""
    B, L, _ = x.shape
    q = attn.q_proj(x).view(B, L, attn.num_heads, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(B, L, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(B, L, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    rep = attn.num_heads // attn.num_kv_heads
    out = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                         attn_mask=mask)
    return attn.o_proj(out.transpose(1, 2).reshape(B, L, -1))


def packed_docs() -> torch.Tensor:
    # row 0: three documents; row 1: two documents and padding
    return torch.tensor([[1] * 5 + [2] * 7 + [3] * 4, [1] * 6 + [2] * 6 + [0] * 4])


def test_doc_runs_finds_documents_on_the_host():
    runs = doc_runs(packed_docs())
    assert runs.cu_seqlens.tolist() == [0, 5, 12, 16, 22, 28]
    assert runs.max_len == 7 and runs.token_index.numel() == 28 and not runs.one_per_row
    whole = doc_runs(torch.ones(3, 8, dtype=torch.long))
    assert whole.one_per_row and whole.token_index is None and whole.cu_seqlens.tolist() == [0, 8, 16, 24]
    # a row's first document and the previous row's last one share an id: still two documents
    assert doc_runs(torch.tensor([[1, 1, 2, 2], [2, 2, 2, 2]])).cu_seqlens.tolist() == [0, 2, 4, 8]
    with pytest.raises(ValueError, match="on the CPU"):
        doc_runs(torch.ones(1, 2, dtype=torch.long, device="meta"))


@pytest.mark.parametrize("backend", ["dense", "varlen"])
def test_gqa_paths_equal_repeated_kv(backend):
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, num_kv_heads=2, qkv_bias=True)
    docs = packed_docs()
    x = torch.randn(*docs.shape, 32, requires_grad=True)
    mask = doc_causal_mask(docs)
    ref = repeat_reference(attn, x, mask)
    plan = DocAttention.build(docs, backend, doc_runs(docs))
    got = attn(x, plan)
    real = docs != 0
    assert torch.allclose(got[real], ref[real], atol=1e-5)
    g_ref = torch.autograd.grad(ref[real].sum(), attn.k_proj.weight)[0]
    g_got = torch.autograd.grad(got[real].sum(), attn.k_proj.weight)[0]
    assert torch.allclose(g_got, g_ref, atol=1e-4)


def test_causal_shortcut_equals_the_mask_for_whole_rows():
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, num_kv_heads=1)
    docs = torch.ones(2, 12, dtype=torch.long)
    x = torch.randn(2, 12, 32)
    plan = DocAttention.build(docs, "dense", doc_runs(docs))
    assert plan.causal and plan.mask is None
    assert torch.allclose(attn(x, plan), repeat_reference(attn, x, doc_causal_mask(docs)), atol=1e-5)
    # runs found for another grid are not trusted
    assert not DocAttention.build(torch.ones(2, 10, dtype=torch.long), "dense", doc_runs(docs)).causal


@pytest.mark.parametrize("backend", ["dense", "varlen"])
def test_packed_row_equals_its_documents_alone(backend):
    from omnitrain_plugins.qwen_omni.qwen2_thinker import Qwen2Thinker, Qwen2ThinkerConfig
    from omnitrain_plugins.rope1d import Rope1d, Rope1dConfig

    torch.manual_seed(0)
    thinker = Qwen2Thinker(Qwen2ThinkerConfig(hidden_size=32, layers=2, heads=4, kv_heads=2, ffn_dim=64,
                                              attention=backend), 50, Rope1d(Rope1dConfig()))
    lengths = [5, 9, 3]
    ids = torch.randint(0, 50, (1, sum(lengths)))
    docs = torch.cat([torch.full((n,), d) for d, n in enumerate(lengths, 1)])[None]
    pos = torch.cat([torch.arange(n) for n in lengths]).view(1, 1, -1)
    with torch.no_grad():
        packed = thinker(thinker.embed(ids), pos, docs, doc_runs=doc_runs(docs))
        alone, start = [], 0
        for n in lengths:
            one = ids[:, start:start + n]
            ones = torch.ones_like(one)
            alone.append(thinker(thinker.embed(one), torch.arange(n).view(1, 1, -1), ones, doc_runs=doc_runs(ones)))
            start += n
    assert torch.allclose(packed, torch.cat(alone, 1), atol=1e-5)


def test_activation_checkpointing_is_exact():
    from omnitrain_plugins.qwen_omni.qwen2_thinker import Qwen2Thinker, Qwen2ThinkerConfig
    from omnitrain_plugins.rope1d import Rope1d, Rope1dConfig

    def run(ckpt: bool):
        torch.manual_seed(0)
        t = Qwen2Thinker(Qwen2ThinkerConfig(hidden_size=32, layers=2, heads=4, kv_heads=2, ffn_dim=64,
                                            activation_checkpointing=ckpt), 50, Rope1d(Rope1dConfig()))
        ids = torch.randint(0, 50, (2, 10))
        out = t(t.embed(ids), torch.arange(10).expand(1, 2, 10), torch.ones_like(ids))
        out.square().sum().backward()
        return out, t.layers[0].self_attn.q_proj.weight.grad

    (a, ga), (b, gb) = run(False), run(True)
    assert torch.equal(a, b) and torch.allclose(ga, gb, atol=1e-6)


def test_compiled_blocks_equal_eager(monkeypatch):
    """thinker.compile=true: the same numbers, the same parameter names. Compiled with
    aot_eager (graph capture and autograd as inductor gets them) to stay fast on 2 cores."""
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="aot_eager"))
    from omnitrain_plugins.qwen_omni.qwen2_thinker import Qwen2Thinker, Qwen2ThinkerConfig
    from omnitrain_plugins.rope1d import Rope1d, Rope1dConfig

    def run(compiled: bool):
        torch.manual_seed(0)
        t = Qwen2Thinker(Qwen2ThinkerConfig(hidden_size=32, layers=1, heads=4, kv_heads=2, ffn_dim=64,
                                            compile=compiled), 50, Rope1d(Rope1dConfig()))
        ids = torch.randint(0, 50, (2, 10))
        out = t(t.embed(ids), torch.arange(10).expand(1, 2, 10), torch.ones_like(ids), doc_runs=doc_runs(torch.ones_like(ids)))
        out.square().sum().backward()
        return out, t.layers[0].mlp.up_proj.weight.grad, sorted(t.state_dict())

    (a, ga, ka), (b, gb, kb) = run(False), run(True)
    assert ka == kb and torch.allclose(a, b, atol=1e-5) and torch.allclose(ga, gb, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it did compile
