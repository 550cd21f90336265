"""The Qwen3-Omni MoE Thinker (``thinker=qwen3_moe``) against transformers'
``Qwen3OmniMoeThinkerTextModel`` with the same random weights (a few experts, top-2, a dense
layer among MoE layers, q/k norm, head_dim unlike hidden/heads), fp32: final states on
padded rows with distinct time/height/width position rows (interleaved M-RoPE), the
load-balancing loss over the real tokens, grouped experts equal to the loop (forward and
backward), and the cached decode equal to the full forward."""

from __future__ import annotations

import pytest
import torch

from omnitrain_plugins.mrope import MRope, MRopeConfig
from omnitrain_plugins.qwen3_omni.moe import balance_loss
from omnitrain_plugins.qwen3_omni.moe_thinker import Qwen3MoeThinker, Qwen3MoeThinkerConfig
from tests.helpers import randomized

transformers = pytest.importorskip("transformers")
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as hf  # noqa: E402
from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeTextConfig  # noqa: E402

VOCAB, SECTION = 96, [2, 3, 3]  # head_dim 16: 8 frequencies, T/H/W interleaved


def ours(experts_impl: str = "loop") -> Qwen3MoeThinker:
    cfg = Qwen3MoeThinkerConfig(hidden_size=32, layers=3, heads=4, kv_heads=2, head_dim=16, ffn_dim=48,
                                moe_ffn_dim=24, experts=4, top_k=2, mlp_only_layers=[1], experts_impl=experts_impl)
    position = MRope(MRopeConfig(theta=10000.0, mrope_section=SECTION, mrope_interleaved=True))
    return Qwen3MoeThinker(cfg, VOCAB, position)


def theirs():
    cfg = Qwen3OmniMoeTextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, moe_intermediate_size=24, num_experts=4, num_experts_per_tok=2,
        norm_topk_prob=True, mlp_only_layers=[1], decoder_sparse_step=1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": SECTION},
    )
    cfg._attn_implementation = "eager"
    return hf.Qwen3OmniMoeThinkerTextModel(cfg).eval()


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    model, reference = ours(), randomized(theirs(), 0.3)  # routing far from ties
    missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
    assert missing == ["lm_head.weight"] and unexpected == []  # transformers' names, one to one
    return model.eval(), reference


def inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 10), generator=g)
    t = torch.arange(10).expand(2, 10)
    positions = torch.stack([t, t // 2 + torch.randint(0, 3, (2, 10), generator=g), t % 3])  # three distinct rows
    keep = torch.ones(2, 10, dtype=torch.bool)
    keep[1, 7:] = False  # the second row is padded
    return ids, positions, keep


def test_states_and_router_loss_equal_transformers(pair):
    model, reference = pair
    ids, positions, keep = inputs()
    with torch.no_grad():
        want = reference(input_ids=ids, position_ids=positions, attention_mask=keep.long(), output_router_logits=True)
        got = model(model.embed(ids), positions, keep.long())
    torch.testing.assert_close(got.hidden[keep], want.last_hidden_state[keep], rtol=0, atol=1e-5)
    aux = hf.load_balancing_loss_func(want.router_logits, 4, 2, keep.long())
    torch.testing.assert_close(got.aux_losses["router"], aux, rtol=1e-6, atol=1e-7)
    assert len(want.router_logits) == 2  # the dense layer has no router


def test_grouped_experts_equal_the_loop_forward_and_backward(pair):
    loop, _ = pair
    grouped = ours("grouped")
    grouped.load_state_dict(loop.state_dict())
    ids, positions, keep = inputs()
    outs, grads = [], []
    for model in (loop, grouped):
        model.zero_grad()
        out = model(model.embed(ids), positions, keep.long())
        ((out.hidden * keep[..., None]).pow(2).mean() + out.aux_losses["router"]).backward()
        outs.append(out.hidden.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-6)
    assert grads[0].keys() == grads[1].keys() and any("experts" in n for n in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=0, atol=1e-6, msg=name)


def test_cached_decode_equals_the_full_forward(pair):
    from omnitrain.nn.kv_cache import KVCache

    model, _ = pair
    ids, positions, _ = inputs()
    ids, positions = ids[:1], positions[:, :1]
    with torch.no_grad():
        full = model(model.embed(ids), positions, torch.ones_like(ids)).hidden
        cache = KVCache()
        prefill = model.step(model.embed(ids[:, :7]), positions[:, :, :7], cache).hidden
        steps = [model.step(model.embed(ids[:, i:i + 1]), positions[:, :, i:i + 1], cache).hidden for i in range(7, 10)]
    torch.testing.assert_close(torch.cat([prefill, *steps], 1), full, rtol=0, atol=1e-5)


def test_balance_loss_is_one_when_routing_is_uniform():
    """E * sum(1/E * 1/E) * E... : equal probabilities and equal shares give exactly 1."""
    logits = torch.zeros(8, 4)
    logits[torch.arange(8), torch.arange(8) % 4] = 1e-6  # ties broken evenly: each expert chosen as often
    assert balance_loss([logits], 1).item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("impl", ["loop", "grouped"])
def test_an_expert_no_token_chose_still_gets_its_zero_gradient(impl):
    """With the router at zero every token picks the same two experts (torch.topk's choice
    among ties): the others run no token, and their weights still get a gradient (of zeros),
    so DDP finds no unused parameter and every ZeRO-3 rank gathers the same tensors."""
    torch.manual_seed(0)
    model = ours(impl)
    for layer in model.layers:
        if layer.sparse:
            torch.nn.init.zeros_(layer.mlp.gate.weight)
    ids, positions, keep = inputs()
    out = model(model.embed(ids), positions, keep.long())
    (out.hidden.pow(2).mean() + out.aux_losses["router"]).backward()
    experts = model.layers[0].mlp.experts
    for weight in (experts.gate_up_proj, experts.down_proj):
        per_expert = weight.grad.abs().sum((1, 2))
        assert (per_expert == 0).sum() == 2 and (per_expert > 0).sum() == 2, per_expert
