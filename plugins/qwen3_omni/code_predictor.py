"""Qwen3-Omni's code predictor (transformers' ``Qwen3OmniMoeTalkerCodePredictorModel...``,
its names): a small dense decoder that, for one frame, reads [the Talker's state, the
frame's group-0 code] and predicts the residual groups one by one, group g + 1 by head g
from the position of group g.

transformers can only run it step by step (its ``forward`` applies one head to every
position). Here ``teacher_forced`` runs every residual group of every frame in one forward:
the frames are the batch, [state, c0, c1, ..., c_{Q-2}] the sequence, and each position's
logits come from its own head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnitrain.nn.attention import Attention
from omnitrain.nn.blocks import SwiGLU
from omnitrain.nn.kv_cache import KVCache
from omnitrain.nn.norms import RMSNorm
from omnitrain.nn.rotary import rotary_1d


@dataclass
class CodePredictorShape:
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_dim: int
    groups: int  # code groups a frame (the predictor makes groups 1 .. groups - 1)
    codebook: int  # ids a group's codes take
    rms_eps: float = 1e-6
    rope_theta: float = 1e6


class PredictorLayer(nn.Module):
    def __init__(self, s: CodePredictorShape) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_eps)
        self.self_attn = Attention(s.hidden_size, s.heads, s.kv_heads, head_dim=s.head_dim, qk_norm_eps=s.rms_eps)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_eps)
        self.mlp = SwiGLU(s.hidden_size, s.ffn_dim)

    def forward(self, x: Tensor, mask, rotary, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), mask, rotary, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class PredictorModel(nn.Module):
    def __init__(self, s: CodePredictorShape) -> None:
        super().__init__()
        self.shape = s
        self.layers = nn.ModuleList(PredictorLayer(s) for _ in range(s.layers))
        self.norm = RMSNorm(s.hidden_size, s.rms_eps)
        self.codec_embedding = nn.ModuleList(nn.Embedding(s.codebook, s.hidden_size) for _ in range(s.groups - 1))

    def forward(self, x: Tensor, start: int = 0, cache: KVCache | None = None) -> Tensor:
        """(N, L, D) positions ``start ..`` of each frame's sequence -> final states."""
        pos = torch.arange(start, start + x.shape[1], device=x.device)
        rotary = rotary_1d(pos, self.shape.head_dim, self.shape.rope_theta, x.dtype)
        mask = None if x.shape[1] == 1 else torch.ones(  # causal over the cached positions and these
            x.shape[1], start + x.shape[1], dtype=torch.bool, device=x.device).tril(start)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, rotary, cache, i)
        return self.norm(x)


class CodePredictor(nn.Module):
    """``model`` (layers, norm, one embedding table per residual group but the last's
    input) and ``lm_head`` (one head per residual group)."""

    def __init__(self, s: CodePredictorShape) -> None:
        super().__init__()
        self.shape = s
        self.model = PredictorModel(s)
        self.lm_head = nn.ModuleList(nn.Linear(s.hidden_size, s.codebook, bias=False) for _ in range(s.groups - 1))

    def embed(self, codes: Tensor, group: int) -> Tensor:
        """Embeddings of residual group ``group`` (1 .. groups - 1) codes."""
        return self.model.codec_embedding[group - 1](codes.clamp(0, self.shape.codebook - 1))

    def teacher_forced(self, state: Tensor, first: Tensor, codes: Tensor) -> Tensor:
        """Frames' Talker states (N, D), their group-0 embeddings (N, D) and codes (N, Q) ->
        the residual groups' logits (N, Q - 1, codebook)."""
        Q = self.shape.groups
        inputs = [state, first] + [self.embed(codes[:, g], g) for g in range(1, Q - 1)]
        hidden = self.model(torch.stack(inputs, 1))
        return torch.stack([self.lm_head[g](hidden[:, g + 1]) for g in range(Q - 1)], 1)

    @torch.no_grad()
    def generate(self, state: Tensor, first: Tensor, pick) -> tuple[Tensor, Tensor]:
        """One frame's residual codes, group by group: ``pick(logits (N, codebook))`` -> (N,)
        ids. Returns the codes (N, Q - 1) and the sum of their embeddings (N, D), which the
        Talker adds to its next input."""
        cache = KVCache()
        hidden = self.model(torch.stack([state, first], 1), 0, cache)[:, -1]
        codes, total = [], torch.zeros_like(state)
        for g in range(1, self.shape.groups):
            code = pick(self.lm_head[g - 1](hidden))
            codes.append(code)
            embedded = self.embed(code, g)
            total = total + embedded
            if g < self.shape.groups - 1:
                hidden = self.model(embedded[:, None], g + 1, cache)[:, -1]
        return torch.stack(codes, 1), total
