"""Dual-track Talker (Qwen2.5-Omni): codec tokens from the Thinker's reply, token by token.

At every step the input is the embedding of the previous codec token plus the Thinker's
reply vector for that step (its last hidden state + the reply token's embedding), both
in the Thinker's width and projected to the Talker's. The sequence, as in transformers'
``Qwen2_5OmniForConditionalGeneration.generate``::

    [prompt vectors] [speaker + codec_pad] [reply_0 + codec_bos] [c_0 + reply_1] ...

after the text runs out the text track continues with ``text_eos`` once, then
``text_pad``. The prefix lets the Talker read the prompt (a question asked in audio may
shape how the reply is said). Positions come from the configured position scheme: the
prompt keeps the Thinker's ids (TMRoPE for media), the rest continue as text.

Codec specials follow the codec ids: pad, bos, eos, mask. transformers' Talker has no
training loss; here position ``bos`` predicts ``c_0``, ``c_{j-1}`` predicts ``c_j`` and
the last code predicts ``eos``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from omnitrain.api import (
    DecoderLayer,
    KVCache,
    PositionScheme,
    RMSNorm,
    Talker,
    TalkerContext,
    doc_causal_mask,
    register,
    sample_next,
)


@dataclass
class DualTrackTalkerConfig:
    dim: int = 128  # Talker width (Qwen2.5-Omni 7B: 896)
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32  # 7B: 128 (not dim / heads)
    ffn_dim: int = 384
    rms_eps: float = 1e-6


def continue_as_text(prompt_positions: Tensor, n: int) -> Tensor:
    """(rows, S, P) ids of a left-padded prompt -> (rows, S, P + n): n text ids after it.

    The prompt ends with text (the assistant turn's start), so text continues from its
    last id + 1 on every row, as ``get_rope_index`` continues after a text piece.
    """
    rows, S, P = prompt_positions.shape
    if P:
        last = prompt_positions[:, :, -1].max(0).values
    else:
        last = torch.full((S,), -1, dtype=torch.long, device=prompt_positions.device)
    after = last[:, None] + 1 + torch.arange(n, device=prompt_positions.device)
    return torch.cat([prompt_positions, after[None].expand(rows, S, n)], dim=-1)


@register("talker", "dual_track", config=DualTrackTalkerConfig)
class DualTrackTalker(Talker):
    """Qwen2.5-Omni Talker: previous codec token + the Thinker's reply vector each step."""

    block_types = (DecoderLayer,)

    def __init__(self, cfg: DualTrackTalkerConfig, thinker_hidden_size: int, codec_vocab_size: int,
                 position: PositionScheme, num_speakers: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        position.check_head_dim(cfg.head_dim)
        self.position = position
        self.vocab_size = codec_vocab_size + 4
        self.pad_id, self.bos_id = codec_vocab_size, codec_vocab_size + 1
        self.eos_id, self.mask_id = codec_vocab_size + 2, codec_vocab_size + 3
        width = thinker_hidden_size
        # Qwen keeps codec embeddings, the speaker's bos token and the text_eos/text_pad
        # tokens in the Thinker's width; they are projected with the reply vectors.
        self.codec_embed = nn.Embedding(self.vocab_size, width)
        self.text_embed = nn.Embedding(2, width)  # rows: text_eos, text_pad
        self.speaker_embed = nn.Embedding(num_speakers, width)
        self.proj = nn.Linear(width, cfg.dim)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg.dim, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.rms_eps)
            for _ in range(cfg.layers)
        )
        self.norm = RMSNorm(cfg.dim, cfg.rms_eps)
        self.head = nn.Linear(cfg.dim, self.vocab_size, bias=False)

    # ---- the text track --------------------------------------------------------
    def text_track(self, reply: Tensor, reply_mask: Tensor, start: int, n: int) -> Tensor:
        """Text-track rows for codec steps start..start+n-1: (S, n, D).

        Step 0 reads reply token 0; step j reads reply token j while j <= G - 2 (G reply
        tokens, the closing eos never fed); then ``text_eos`` once, then ``text_pad``.
        """
        S, R, D = reply.shape
        G = reply_mask.sum(1)
        last = (G - 2).clamp_min(0)[:, None]
        j = torch.arange(start, start + n, device=reply.device)[None]
        rows = reply.gather(1, j.clamp(max=R - 1).expand(S, n)[..., None].expand(S, n, D))
        eos, pad = self.text_embed.weight[0], self.text_embed.weight[1]
        tail = torch.where((j == last + 1)[..., None], eos, pad)
        return torch.where(((j <= last) | (j == 0))[..., None], rows, tail.to(rows.dtype))

    def _speaker_row(self, speaker: Tensor) -> Tensor:
        return self.speaker_embed(speaker) + self.codec_embed.weight[self.pad_id]

    def _run(self, embeds: Tensor, positions: Tensor, mask: Tensor,
             cache: KVCache | None = None) -> Tensor:
        x = self.proj(embeds)
        rotary = self.position.rotary(positions, self.cfg.head_dim)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, rotary, cache, i)
        return self.head(self.norm(x))

    # ---- training --------------------------------------------------------------
    def sequence_length(self, prompt: int, reply: int, codes: int) -> int:
        """[prompt] [speaker] [bos, codes]: the reply rides on the codec positions."""
        return prompt + 1 + codes + 1

    def forward(self, ctx: TalkerContext, codec_in: Tensor, codec_mask: Tensor) -> Tensor:
        S, C = codec_in.shape
        P = ctx.prompt.shape[1]
        track = self.text_track(ctx.reply, ctx.reply_mask, 0, C)
        embeds = torch.cat(
            [ctx.prompt, self._speaker_row(ctx.speaker)[:, None], self.codec_embed(codec_in) + track], 1
        )
        valid = torch.cat([ctx.prompt_mask, torch.ones_like(codec_mask[:, :1]), codec_mask], 1)
        positions = continue_as_text(ctx.prompt_positions, 1 + C)
        return self._run(embeds, positions, doc_causal_mask(valid.long()))[:, P + 1:]

    # ---- inference -------------------------------------------------------------
    def _prefill(self, ctx: TalkerContext, first: Tensor) -> tuple[Tensor, KVCache, Tensor, Tensor]:
        S = first.shape[0]
        bos = self.codec_embed.weight[self.bos_id]
        embeds = torch.cat([ctx.prompt, self._speaker_row(ctx.speaker)[:, None], (first + bos)[:, None]], 1)
        ones = torch.ones(S, 2, dtype=torch.bool, device=first.device)
        valid = torch.cat([ctx.prompt_mask, ones], 1)
        positions = continue_as_text(ctx.prompt_positions, 2)
        cache = KVCache()
        logits = self._run(embeds, positions, doc_causal_mask(valid.long()), cache)[:, -1]
        return logits, cache, valid, positions[:, :, -1:]

    def _step(self, token: Tensor, track: Tensor, cache: KVCache, valid: Tensor,
              position: Tensor) -> Tensor:
        x = (self.codec_embed(token) + track)[:, None]
        mask = valid[:, None, None, :]
        return self._run(x, position, mask, cache)[:, -1]

    def _decode(self, ctx: TalkerContext, first: Tensor, track_at, max_tokens: int,
                sampling: dict[str, Any]) -> Iterator[Tensor]:
        """Yield (S,) codec ids step by step; ``track_at(j)`` gives the text-track row.
        ``sampling["min_tokens"]``: no eos before that many codes (transformers'
        ``min_new_tokens``)."""
        sampling = dict(sampling)
        min_tokens = int(sampling.pop("min_tokens", 0))
        S, P = first.shape[0], ctx.prompt.shape[1]
        logits, cache, valid, position = self._prefill(ctx, first)
        device = first.device
        # the repetition penalty sees the bookkeeping ids too, as in transformers' generate
        history = torch.tensor([self.mask_id] * P + [self.pad_id, self.bos_id], device=device)
        history = history[None].expand(S, -1)
        done = torch.zeros(S, dtype=torch.bool, device=device)
        stop = torch.tensor([self.eos_id, self.pad_id], device=device)
        for j in range(max_tokens):
            suppress = [self.bos_id, self.mask_id] + ([self.eos_id, self.pad_id] if j < min_tokens else [])
            nxt = sample_next(logits.float(), history=history, suppress=suppress, **sampling)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            done = done | torch.isin(nxt, stop)
            yield nxt
            if bool(done.all()) or j + 1 == max_tokens:
                return
            history = torch.cat([history, nxt[:, None]], 1)
            valid = torch.cat([valid, torch.ones_like(valid[:, :1])], 1)
            position = position + 1
            logits = self._step(nxt, track_at(j + 1), cache, valid, position)

    @torch.no_grad()
    def generate(self, ctx: TalkerContext, max_tokens: int, **sampling: Any) -> Tensor:
        first = self.text_track(ctx.reply, ctx.reply_mask, 0, 1)[:, 0]

        def track_at(j: int) -> Tensor:
            return self.text_track(ctx.reply, ctx.reply_mask, j, 1)[:, 0]

        steps = list(self._decode(ctx, first, track_at, max_tokens, sampling))
        if not steps:
            return torch.zeros(first.shape[0], 0, dtype=torch.long, device=first.device)
        codes = torch.stack(steps, 1)
        return codes.masked_fill(codes == self.eos_id, self.pad_id)

    @torch.no_grad()
    def stream(self, ctx: TalkerContext, replies: Iterable[Tensor], max_tokens: int,
               **sampling: Any) -> Iterator[int]:
        """Start on the first reply token; step j waits only for reply token j + 1 (to
        know whether token j is the closing eos)."""
        source, rows = iter(replies), []

        def pull(n: int) -> Tensor:
            while len(rows) < n:
                row = next(source, None)
                if row is None:
                    break
                rows.append(row)
            if not rows:
                raise ValueError("the Thinker gave no reply tokens to speak")
            return torch.stack(rows)[None]

        def track_at(j: int) -> Tensor:
            reply = pull(j + 2)
            mask = torch.ones(reply.shape[:2], dtype=torch.bool, device=reply.device)
            return self.text_track(reply, mask, j, 1)[:, 0]

        first = pull(1)[:, 0]
        for token in self._decode(ctx, first, track_at, max_tokens, sampling):
            t = int(token[0])
            if t in (self.eos_id, self.pad_id):
                return
            yield t
