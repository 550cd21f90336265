"""LoRA on 3-D expert weights (``omnitrain.nn.grouped_lora`` through ``add_lora``): each
expert's update is ``alpha/rank * B[e] @ A[e]``, it starts at the base model, the grouped and
the loop experts agree with it forward and backward, merging (in memory or piece by piece
from a stream) gives the same function, and the router is never a target."""

from __future__ import annotations

import copy

import pytest
import torch

from omnitrain.nn.lora import add_lora, is_adapter, merge_lora_, merged_piece
from omnitrain_plugins.qwen3_omni.moe import SparseMoe


def moe(grouped: bool, seed: int = 0) -> SparseMoe:
    torch.manual_seed(seed)
    layer = SparseMoe(dim=16, hidden=8, experts=4, top_k=2, norm_topk_prob=True, grouped=grouped)
    with torch.no_grad():
        layer.gate.weight.normal_(0, 0.5)
    return layer


def by_hand(layer: SparseMoe, x: torch.Tensor) -> torch.Tensor:
    """The layer's function with each expert's merged weight W[e] + scale * B[e] @ A[e]."""
    ref = copy.deepcopy(layer)
    with torch.no_grad():
        for weight, adapter in layer.experts.lora.items():
            getattr(ref.experts, weight).add_(adapter.scale * torch.bmm(adapter.B, adapter.A))
    del ref.experts.lora
    return ref(x)[0]


@pytest.mark.parametrize("rank", [8, 4])  # 8: the grouped adapter matmuls; 4: the loop's
def test_expert_adapters_follow_the_low_rank_update_grouped_and_looped(rank):
    x = torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(5))
    grouped, looped = moe(True), moe(False)
    base = grouped(x)[0]
    names = add_lora(grouped, ["gate_up_proj", "down_proj"], rank=rank, alpha=2.0 * rank)
    add_lora(looped, ["gate_up_proj", "down_proj"], rank=rank, alpha=2.0 * rank)
    assert names == ["experts.gate_up_proj", "experts.down_proj"]
    assert torch.equal(grouped(x)[0], base)  # B starts at zero: the base model
    adapters = sorted(n for n, _ in grouped.named_parameters() if is_adapter(n))
    assert adapters == ["experts.lora.down_proj.A", "experts.lora.down_proj.B",
                        "experts.lora.gate_up_proj.A", "experts.lora.gate_up_proj.B"]
    with torch.no_grad():
        for layer in (grouped, looped):
            for adapter in layer.experts.lora.values():
                adapter.B.normal_(0, 0.3)
        looped.load_state_dict(grouped.state_dict())
    want = by_hand(grouped, x)
    assert (want - base).abs().max() > 1e-2  # the update matters
    for layer in (grouped, looped):  # outputs of about 3: float32 rounding in another summation order
        torch.testing.assert_close(layer(x)[0], want, rtol=0, atol=1e-5)
    # backward: the adapters' gradients agree between the two paths
    grouped(x)[0].square().sum().backward()
    looped(x)[0].square().sum().backward()
    for (name, a), b in zip(grouped.experts.lora.named_parameters(), looped.experts.lora.parameters(), strict=True):
        assert a.grad.abs().sum() > 0, name
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-5, msg=name)


def test_merging_in_memory_and_piece_by_piece_gives_the_adapted_function():
    layer = moe(True)
    add_lora(layer, ["gate_up_proj", "down_proj"], rank=8, alpha=16.0)
    with torch.no_grad():
        for adapter in layer.experts.lora.values():
            adapter.B.normal_(0, 0.3)
    x = torch.randn(3, 10, 16, generator=torch.Generator().manual_seed(6))
    adapted = layer(x)[0]
    adapter = layer.experts.lora["gate_up_proj"]
    base = layer.experts.gate_up_proj.detach().clone()
    want = base + adapter.scale * torch.bmm(adapter.B, adapter.A).detach()
    # a stream's pieces may cut anywhere, across experts too: (4, 16, 16) seen as (64, 16)
    flat = base.flatten()
    cuts = [0, 5, 250, 700, flat.numel()]
    pieces = [merged_piece(flat[i:j], i, 16, adapter.A.detach(), adapter.B.detach(), adapter.scale)
              for i, j in zip(cuts, cuts[1:], strict=False)]
    torch.testing.assert_close(torch.cat(pieces).view_as(base), want, rtol=0, atol=1e-6)
    assert merge_lora_(layer) == 2 and not hasattr(layer.experts, "lora")
    torch.testing.assert_close(layer.experts.gate_up_proj.detach(), want, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x)[0], adapted, rtol=0, atol=1e-6)


def test_the_router_is_no_target():
    with pytest.raises(ValueError, match="'gate' matches no Linear layer or expert weight"):
        add_lora(moe(True), ["gate"], rank=8, alpha=16.0)
