"""A Qwen2 decoder layer that can also decode incrementally with a key/value cache.

Same parameters as ``TransformerBlock`` (and transformers' ``Qwen2DecoderLayer``), plus an
explicit ``head_dim`` (Qwen2.5-Omni's talker has head_dim 128 at width 896). The cache
lets autoregressive plugins (the dual-track Talker) run one token per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.nn.attention import Attention
from omnitrain.nn.blocks import SwiGLU
from omnitrain.nn.norms import RMSNorm
from omnitrain.nn.rotary import apply_rotary


class KVCache:
    """Keys and values of every layer for the tokens decoded so far."""

    def __init__(self) -> None:
        self.layers: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if layer in self.layers:
            old_k, old_v = self.layers[layer]
            k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
        self.layers[layer] = (k, v)
        return k, v

    @property
    def length(self) -> int:
        return next(iter(self.layers.values()))[0].shape[2] if self.layers else 0


def cached_attention(
    attn: Attention, x: Tensor, mask: Tensor | None, rotary: tuple[Tensor, Tensor],
    cache: KVCache | None, layer: int,
) -> Tensor:
    """``attn(x, mask, rotary)``, attending also to cached keys; mask (B, 1, Lq, Lcache + Lq)."""
    B, L, _ = x.shape
    q = attn.q_proj(x).view(B, L, attn.num_heads, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(B, L, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(B, L, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    q, k = apply_rotary(q, k, *rotary)
    if cache is not None:
        k, v = cache.update(layer, k, v)
    if attn.num_kv_heads != attn.num_heads:
        rep = attn.num_heads // attn.num_kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.o_proj(out.transpose(1, 2).reshape(B, L, -1))


class DecoderLayer(nn.Module):
    """Pre-norm Qwen2 layer: RMSNorm, GQA attention (q/k/v bias), RMSNorm, SwiGLU."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, ffn_dim: int,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.self_attn = Attention(dim, heads, kv_heads, head_dim=head_dim, qkv_bias=True)
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, ffn_dim)

    def forward(self, x: Tensor, mask: Tensor | None, rotary: tuple[Tensor, Tensor],
                cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + cached_attention(self.self_attn, self.input_layernorm(x), mask, rotary, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))
