"""Qwen2-style decoder LM: RMSNorm, SwiGLU, grouped-query attention with q/k/v bias.

Rotary positions come from the injected positional scheme, so the same Thinker runs
with TMRoPE, M-RoPE or 1D RoPE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnitrain.api import KVCache, PositionScheme, RMSNorm, Thinker, TransformerBlock, register
from omnitrain.nn.varlen import DocAttention, DocRuns


@dataclass
class Qwen2ThinkerConfig:
    hidden_size: int = 128
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    ffn_dim: int = 384
    rms_eps: float = 1e-6
    tie_embeddings: bool = False
    attention: str = "auto"  # auto: varlen FlashAttention on CUDA, dense block mask elsewhere
    # recompute each block in backward (any strategy): activations of one block, not all
    activation_checkpointing: bool = False
    # torch.compile each block (fuses RMSNorm, rotary and SwiGLU's elementwise work); off by
    # default: on a 2-core CPU not a consistent win (docs/BENCHMARKS.md); measure first
    compile: bool = False


@register("thinker", "qwen2", config=Qwen2ThinkerConfig)
class Qwen2Thinker(Thinker):
    """Qwen2 decoder (GQA, SwiGLU, RMSNorm) over mixed text/media embeddings."""

    block_types = (TransformerBlock,)
    takes_doc_runs = True
    batched_step = True

    def __init__(self, cfg: Qwen2ThinkerConfig, vocab_size: int, position: PositionScheme) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.heads:
            raise ValueError(
                f"thinker.hidden_size={cfg.hidden_size} is not divisible by thinker.heads={cfg.heads}"
            )
        self.cfg = cfg
        self.hidden_size = cfg.hidden_size
        self.head_dim = cfg.hidden_size // cfg.heads
        position.check_head_dim(self.head_dim)
        self.position = position
        self.embed_tokens = nn.Embedding(vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            TransformerBlock(
                cfg.hidden_size, cfg.heads, cfg.ffn_dim, cfg.kv_heads, qkv_bias=True, eps=cfg.rms_eps
            )
            for _ in range(cfg.layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, vocab_size, bias=False)
        if cfg.attention not in ("auto", "dense", "varlen"):
            raise ValueError(f"thinker.attention must be auto, dense or varlen, got {cfg.attention!r}")
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        if cfg.compile:
            for layer in self.layers:
                layer.compile()  # in place: parameter names and checkpoints unchanged

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.embed_tokens(input_ids)

    def forward(self, inputs_embeds: Tensor, position_ids: Tensor, doc_ids: Tensor,
                doc_runs: DocRuns | None = None) -> Tensor:
        """``doc_runs``: the documents found in the data workers (``Batch.doc_runs``), so
        the varlen path never reads them off the GPU."""
        rotary = self.position.rotary(position_ids, self.head_dim)
        mask = DocAttention.build(doc_ids, self.cfg.attention, doc_runs)
        x = inputs_embeds
        for layer in self.layers:
            if self.cfg.activation_checkpointing and torch.is_grad_enabled():
                # recompute the block in backward: one block's activations alive at a time
                x = checkpoint(layer, x, mask, rotary, use_reentrant=False)
            else:
                x = layer(x, mask, rotary)
        return self.norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden)

    def head_linear(self) -> nn.Linear:
        """The Linear ``logits`` applies: the loss fuses it with the cross-entropy."""
        return self.lm_head

    def recomputes_activations(self) -> bool:
        return self.cfg.activation_checkpointing  # thinker.activation_checkpointing

    def step(self, inputs_embeds: Tensor, position_ids: Tensor, cache: KVCache) -> Tensor:
        rotary = self.position.rotary(position_ids, self.head_dim)
        # causal over the new tokens, every real cached key visible (several prompts
        # decoding together pad theirs on the left); one token of one prompt needs no mask
        mask = cache.step_mask(inputs_embeds.shape[1], inputs_embeds.device)
        x = inputs_embeds
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, rotary, cache, i)
        return self.norm(x)
