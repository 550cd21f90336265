"""Feed-forward and pre-norm transformer blocks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.nn.attention import Attention
from omnitrain.nn.kv_cache import KVCache
from omnitrain.nn.norms import RMSNorm


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), the Qwen2 MLP."""

    def __init__(self, dim: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)
        self.up_proj = nn.Linear(dim, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)); x + mlp(norm(x)), RMSNorm and SwiGLU."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        num_kv_heads: int | None = None,
        qkv_bias: bool = False,
        eps: float = 1e-6,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.self_attn = Attention(dim, num_heads, num_kv_heads, head_dim=head_dim, qkv_bias=qkv_bias)
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, ffn_dim)

    def forward(self, x: Tensor, mask: Tensor | None, rotary=None, cache: KVCache | None = None,
                layer: int = 0) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), mask, rotary, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))
