"""A Qwen2 decoder layer with an explicit ``head_dim``: a ``TransformerBlock`` with q/k/v bias
(transformers' ``Qwen2DecoderLayer``; Qwen2.5-Omni's talker has head_dim 128 at width 896).
It decodes incrementally with a ``KVCache`` like every ``Attention``."""

from __future__ import annotations

from omnitrain.nn.blocks import TransformerBlock


class DecoderLayer(TransformerBlock):
    """Pre-norm Qwen2 layer: RMSNorm, GQA attention (q/k/v bias), RMSNorm, SwiGLU."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, ffn_dim: int,
                 eps: float = 1e-6) -> None:
        super().__init__(dim, heads, ffn_dim, kv_heads, qkv_bias=True, eps=eps, head_dim=head_dim)
