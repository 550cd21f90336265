"""Attention against attention written out by hand (fp64 softmax of scaled scores): a
boolean mask, no mask, rotary embeddings, a KV cache, grouped K/V heads; and the checks
on the head counts."""

from __future__ import annotations

import math

import pytest
import torch

from omnitrain.nn.attention import Attention
from omnitrain.nn.kv_cache import KVCache
from omnitrain.nn.rotary import apply_rotary


def by_hand(attn: Attention, x, mask=None, rotary=None, past: torch.Tensor | None = None):
    """softmax(q k^T / sqrt(D) masked) v per head, query head h reading K/V head h // group;
    ``past``: earlier tokens whose keys and values come first (as a cache holds them)."""
    B, L, _ = x.shape
    H, Hkv, D = attn.num_heads, attn.num_kv_heads, attn.head_dim
    full = x if past is None else torch.cat([past, x], 1)
    q = attn.q_proj(x).view(B, L, H, D).transpose(1, 2)
    k = attn.k_proj(full).view(B, full.shape[1], Hkv, D).transpose(1, 2)
    v = attn.v_proj(full).view(B, full.shape[1], Hkv, D).transpose(1, 2)
    if rotary is not None:
        q, k = apply_rotary(q, k, *rotary)
    group = H // Hkv
    k, v = k[:, [h // group for h in range(H)]], v[:, [h // group for h in range(H)]]
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = scores.softmax(-1) @ v
    return attn.o_proj(out.transpose(1, 2).reshape(B, L, H * D))


def layer(heads=4, kv_heads=2, head_dim=None) -> Attention:
    torch.manual_seed(0)
    return Attention(24, heads, kv_heads, head_dim=head_dim, qkv_bias=True, out_bias=True).double()


def test_a_boolean_mask_and_no_mask_equal_the_hand_computation():
    attn = layer()
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    mask = torch.rand(2, 1, 7, 7) < 0.6
    mask |= torch.eye(7, dtype=torch.bool)  # every query sees at least itself
    torch.testing.assert_close(attn(x, mask), by_hand(attn, x, mask), rtol=0, atol=1e-15)  # measured 1.7e-16
    torch.testing.assert_close(attn(x, None), by_hand(attn, x), rtol=0, atol=1e-15)  # measured 1.4e-16


def test_rotary_and_head_dim_equal_the_hand_computation():
    """An explicit head_dim (8, not 24 // 4 = 6) and rotary angles per position."""
    attn = layer(heads=4, kv_heads=1, head_dim=8)
    assert attn.q_proj.out_features == 32 and attn.k_proj.out_features == 8
    x = torch.randn(1, 5, 24, dtype=torch.float64)
    angles = torch.arange(5, dtype=torch.float64)[:, None] * torch.linspace(0.1, 1.0, 4).double()
    angles = torch.cat([angles, angles], -1)[None]
    rotary = (angles.cos(), angles.sin())
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x, mask, rotary), by_hand(attn, x, mask, rotary),
                               rtol=0, atol=1e-15)  # measured 2.2e-16


def test_a_cache_attends_to_the_earlier_tokens_and_keeps_the_new_ones():
    """Decoding 2 tokens after 3 cached ones equals attending over all 5 keys; the cache
    then holds 5 per layer, under the layer it was given."""
    attn = layer()
    past, x = torch.randn(1, 3, 24, dtype=torch.float64), torch.randn(1, 2, 24, dtype=torch.float64)
    cache = KVCache()
    attn(past, None, cache=cache, layer=3)
    mask = torch.ones(2, 5, dtype=torch.bool).tril(diagonal=3)  # token i sees the 3 past and new 0..i
    torch.testing.assert_close(attn(x, mask, cache=cache, layer=3), by_hand(attn, x, mask, past=past),
                               rtol=0, atol=1e-15)  # measured 1.1e-16
    assert list(cache.layers) == [3] and cache.length == 5


def test_a_cache_used_without_a_layer_keeps_layer_0():
    """A single-layer caller (no ``layer=``) finds its keys under layer 0, as the
    signature promises."""
    attn, cache = layer(), KVCache()
    attn(torch.randn(1, 3, 24, dtype=torch.float64), None, cache=cache)
    assert list(cache.layers) == [0] and cache.length == 3


def test_head_counts():
    assert layer(heads=6, kv_heads=None).num_kv_heads == 6
    assert layer(heads=4, kv_heads=4).head_dim == 6
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        Attention(24, 4, 3)
