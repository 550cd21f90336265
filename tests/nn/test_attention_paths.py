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


# (backend, output tolerance, gradient tolerance): dense measured 0 (bit-equal), varlen
# measured 1.2e-7 and 3.0e-7 (outputs up to 1.1, gradients up to 1.7)
@pytest.mark.parametrize(("backend", "atol", "grad_atol"), [("dense", 0, 0), ("varlen", 1e-6, 2e-6)])
def test_gqa_paths_equal_repeated_kv(backend, atol, grad_atol):
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, num_kv_heads=2, qkv_bias=True)
    docs = packed_docs()
    x = torch.randn(*docs.shape, 32, requires_grad=True)
    mask = doc_causal_mask(docs)
    ref = repeat_reference(attn, x, mask)
    plan = DocAttention.build(docs, backend, doc_runs(docs))
    got = attn(x, plan)
    real = docs != 0
    torch.testing.assert_close(got[real], ref[real], rtol=0, atol=atol)
    g_ref = torch.autograd.grad(ref[real].sum(), attn.k_proj.weight)[0]
    g_got = torch.autograd.grad(got[real].sum(), attn.k_proj.weight)[0]
    torch.testing.assert_close(g_got, g_ref, rtol=0, atol=grad_atol)


def test_causal_shortcut_equals_the_mask_for_whole_rows():
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, num_kv_heads=1)
    docs = torch.ones(2, 12, dtype=torch.long)
    x = torch.randn(2, 12, 32)
    plan = DocAttention.build(docs, "dense", doc_runs(docs))
    assert plan.causal and plan.mask is None
    assert torch.equal(attn(x, plan), repeat_reference(attn, x, doc_causal_mask(docs)))  # measured 0
    # runs found for another grid are not trusted
    assert not DocAttention.build(torch.ones(2, 10, dtype=torch.long), "dense", doc_runs(docs)).causal


# dense measured 4.8e-7 (outputs up to 3.0), varlen 0 (bit-equal)
@pytest.mark.parametrize(("backend", "atol"), [("dense", 4e-6), ("varlen", 0)])
def test_packed_row_equals_its_documents_alone(backend, atol):
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
    torch.testing.assert_close(packed, torch.cat(alone, 1), rtol=0, atol=atol)


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
    assert torch.equal(a, b) and torch.equal(ga, gb)  # measured 0: bit-equal


def compiled_thinker_run(compiled: bool):
    """One tiny Thinker block, forward and backward on a fixed projection of its output
    (gradients of order 1: the squared norm of an RMS-normed output has gradients near 0)."""
    from omnitrain_plugins.qwen_omni.qwen2_thinker import Qwen2Thinker, Qwen2ThinkerConfig
    from omnitrain_plugins.rope1d import Rope1d, Rope1dConfig

    torch.manual_seed(0)
    t = Qwen2Thinker(Qwen2ThinkerConfig(hidden_size=32, layers=1, heads=4, kv_heads=2, ffn_dim=64,
                                        compile=compiled), 50, Rope1d(Rope1dConfig()))
    ids = torch.randint(0, 50, (2, 10))
    ones = torch.ones_like(ids)
    out = t(t.embed(ids), torch.arange(10).expand(1, 2, 10), ones, doc_runs=doc_runs(ones))
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad for n, p in t.named_parameters() if p.grad is not None}
    return out.detach(), grads, sorted(t.state_dict())


def test_compiled_blocks_equal_eager(monkeypatch):
    """thinker.compile=true: the same numbers, the same parameter names. Compiled with
    aot_eager (graph capture and autograd as inductor gets them), fast on 2 cores."""
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="aot_eager"))
    counters = torch._dynamo.utils.counters
    counters.clear()
    (a, ga, ka), (b, gb, kb) = compiled_thinker_run(False), compiled_thinker_run(True)
    assert ka == kb and ga.keys() == gb.keys() and len(ga) == 14  # the embedding, the block, the norm
    torch.testing.assert_close(b, a, rtol=0, atol=0)  # measured 0: bit-equal
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=0, atol=0)  # measured 0: bit-equal
    assert counters["stats"]["unique_graphs"] == 1 and counters["aot_autograd"]["ok"] == 1  # compiled, one graph


@pytest.mark.slow
def test_compiled_blocks_equal_eager_with_inductor():
    """thinker.compile=true as users get it: the default backend, inductor (C++ kernels on
    the CPU), forward and backward. ~30 s of CPU to compile, the rest of the file 2 s."""
    counters = torch._dynamo.utils.counters
    counters.clear()
    (a, ga, ka), (b, gb, kb) = compiled_thinker_run(False), compiled_thinker_run(True)
    assert ka == kb and ga.keys() == gb.keys() and len(ga) == 14
    torch.testing.assert_close(b, a, rtol=0, atol=2e-6)  # measured 2.4e-7 (outputs up to 2.9)
    for name in ga:  # gradients up to 11.5
        torch.testing.assert_close(gb[name], ga[name], rtol=0, atol=1e-5)  # measured 1.3e-6
    # one graph, and inductor made its code (compiled it, or loaded it from its cache)
    assert counters["stats"]["unique_graphs"] == 1 and sum(counters["inductor"].values()) > 0
