"""Prefix Talker: a small decoder that reads the whole reply, then speaks.

The baseline of the ``talker`` slot. The Thinker's reply vectors (hidden state + token
embedding of each reply token) are projected to the Talker width and placed before
the codec tokens; the codec tokens are predicted causally after them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from omnitrain.api import (
    PositionScheme,
    RMSNorm,
    Talker,
    TalkerContext,
    TransformerBlock,
    doc_causal_mask,
    inverse_frequencies,
    register,
    sample_next,
)


@dataclass
class PrefixTalkerConfig:
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    theta: float = 10000.0


@register("talker", "prefix", config=PrefixTalkerConfig)
class PrefixTalker(Talker):
    """Decoder over [reply vectors | bos, codec tokens]; baseline talker.

    Reads only the reply (not the prompt) and numbers its own positions. With more than one
    voice (``speech.speakers``) a learned vector of the reply's speaker goes first, so codes
    that carry the voice (``codec=fsq_mel``) are spoken in the one asked for.
    """

    block_types = (TransformerBlock,)

    def __init__(self, cfg: PrefixTalkerConfig, thinker_hidden_size: int, codec_vocab_size: int,
                 position: PositionScheme | None = None, num_speakers: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = codec_vocab_size + 3
        self.bos_id, self.eos_id, self.pad_id = codec_vocab_size, codec_vocab_size + 1, codec_vocab_size + 2
        self.reply_proj = nn.Linear(thinker_hidden_size, cfg.dim)
        self.speaker_embed = nn.Embedding(num_speakers, cfg.dim) if num_speakers > 1 else None
        self.codec_embed = nn.Embedding(self.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.ffn_dim) for _ in range(cfg.layers)
        )
        self.norm = RMSNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, self.vocab_size, bias=False)

    def _rotary(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        inv = inverse_frequencies(self.cfg.dim // self.cfg.heads, self.cfg.theta, pos.device)
        angles = pos.float()[..., None] * inv
        emb = torch.cat([angles, angles], -1)
        return emb.cos(), emb.sin()

    def _run(self, reply: Tensor, reply_mask: Tensor, codec_in: Tensor, codec_mask: Tensor,
             speaker: Tensor | None = None) -> Tensor:
        prefix = self.reply_proj(reply)
        if self.speaker_embed is not None:
            who = self.speaker_embed(speaker.to(reply.device))[:, None].to(prefix.dtype)
            prefix = torch.cat([who, prefix], dim=1)
            reply_mask = torch.cat([torch.ones_like(reply_mask[:, :1]), reply_mask], dim=1)
        x = torch.cat([prefix, self.codec_embed(codec_in)], dim=1)
        valid = torch.cat([reply_mask, codec_mask], dim=1).long()
        # positions count real tokens only, so padding inside the prefix shifts nothing
        pos = (valid.cumsum(1) - 1).clamp_min(0)
        mask = doc_causal_mask(valid)
        rotary = self._rotary(pos)
        for layer in self.layers:
            x = layer(x, mask, rotary)
        return self.head(self.norm(x[:, prefix.shape[1]:]))

    def forward(self, ctx: TalkerContext, codec_in: Tensor, codec_mask: Tensor) -> Tensor:
        return self._run(ctx.reply, ctx.reply_mask, codec_in, codec_mask, ctx.speaker)

    @torch.no_grad()
    def generate(self, ctx: TalkerContext, max_tokens: int, **sampling: Any) -> Tensor:
        reply, reply_mask = ctx.reply, ctx.reply_mask
        sampling = dict(sampling)
        min_tokens = int(sampling.pop("min_tokens", 0))
        B = reply.shape[0]
        out = torch.full((B, 1), self.bos_id, dtype=torch.long, device=reply.device)
        done = torch.zeros(B, dtype=torch.bool, device=reply.device)
        for step in range(max_tokens):
            logits = self._run(reply, reply_mask, out, torch.ones_like(out, dtype=torch.bool), ctx.speaker)[:, -1]
            suppress = [self.bos_id, self.pad_id] + ([self.eos_id] if step < min_tokens else [])
            nxt = sample_next(logits, history=out, suppress=suppress, **sampling)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            done |= nxt == self.eos_id
            out = torch.cat([out, nxt[:, None]], dim=1)
            if done.all():
                break
        codes = out[:, 1:]
        return codes.masked_fill(codes == self.eos_id, self.pad_id)
