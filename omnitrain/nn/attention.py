"""Multi-head attention over SDPA, a boolean mask or a varlen plan; grouped-query attention
native (``enable_gqa``, FlashAttention varlen) wherever the kernel has it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.nn.kv_cache import KVCache
from omnitrain.nn.norms import RMSNorm
from omnitrain.nn.rotary import apply_rotary
from omnitrain.nn.varlen import varlen_attention


class Attention(nn.Module):
    """Self-attention with optional grouped KV heads and rotary embeddings."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        qkv_bias: bool = False,
        out_bias: bool = False,
        qk_norm_eps: float | None = None,
    ) -> None:
        """``qk_norm_eps``: RMSNorm each head's queries and keys before the rotary (Qwen3's
        q_norm/k_norm, one weight of head_dim shared by the heads); None: no norm."""
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        self.head_dim = head_dim or dim // num_heads
        self.q_proj = nn.Linear(dim, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, dim, bias=out_bias)
        if qk_norm_eps is not None:
            self.q_norm = RMSNorm(self.head_dim, qk_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, qk_norm_eps)
        self.qk_norm = qk_norm_eps is not None

    def forward(
        self, x: Tensor, mask, rotary: tuple[Tensor, Tensor] | None = None,
        cache: KVCache | None = None, layer: int = 0,
    ) -> Tensor:
        """``mask``: a boolean mask (True = may attend; with a ``cache``, over cached + new
        keys), None, or a ``DocAttention`` plan. ``cache``: attend also to the keys and
        values cached under ``layer``, and append this call's."""
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, L, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if rotary is not None:
            q, k = apply_rotary(q, k, *rotary)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        causal = False
        if mask is not None and not isinstance(mask, Tensor):  # a DocAttention plan
            if mask.causal:
                causal, mask = True, None
            elif mask.mask is None:  # varlen: grouped K/V heads read natively
                out = varlen_attention(q, k, v, mask)
                return self.o_proj(out.transpose(1, 2).reshape(B, L, -1))
            else:
                mask = mask.mask
        gqa = self.num_kv_heads != self.num_heads
        if gqa and mask is not None and q.is_cuda:
            # CUDA's masked SDPA kernel (memory-efficient) has no native GQA: SDPA would
            # fall back to the math kernel and its L x L scores, so repeat K/V here
            rep = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            gqa = False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, -1))
