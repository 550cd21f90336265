"""Qwen3-Omni's Talker (transformers' ``Qwen3OmniMoeTalkerForConditionalGeneration``, its
names): a MoE decoder (every layer top-k experts plus a gated shared expert) that speaks a
reply as frames of code groups, group 0 from its own head and the rest from the code
predictor (``code_predictor.py``), trained here by teacher forcing over every group.

What it reads (``context_spec``): the user turns and the reply's role header, text tokens as
the Thinker's input embeddings (through ``text_projection``) and media tokens as the states
after Thinker layer ``accept_hidden_layer`` (through ``hidden_projection``), at position ids
recounted over what it reads. Then, as the release's ``generate`` lays it out::

    [prompt] [tts_pad + nothink] [tts_pad + think_bos] [tts_pad + think_eos]
    [tts_pad + speaker] [tts_bos + codec_pad] [reply_0 + codec_bos] [frame_0 + reply_1] ...

where ``frame_j`` is the sum of every group's embedding of frame j (group 0 from the
Talker's codec table, group g from the predictor's table g - 1), the text track runs through
the reply (its closing eos left out), then ``tts_eos``, then ``tts_pad``; the codec_bos
position predicts frame 0. ``tts_*`` are the Thinker's embedding rows of those tokens, kept
here (``tts_embed``) as ``dual_track`` keeps its text rows. Speakers are rows of the codec
table (``speaker_ids``, the release's ``talker_config.speaker_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import (
    Attention,
    ContextSpec,
    KVCache,
    RMSNorm,
    Talker,
    TalkerContext,
    TalkerOutput,
    register,
)
from omnitrain.inference.sampling import sample_next
from omnitrain.nn.masked_ce import masked_cross_entropy
from omnitrain.nn.masks import doc_causal_mask
from omnitrain.nn.rotary import default_section, multimodal_rotary
from omnitrain.tokens import IGNORE_INDEX
from omnitrain_plugins.qwen3_omni.code_predictor import CodePredictor, CodePredictorShape
from omnitrain_plugins.qwen3_omni.moe import SharedExpertMoe, balance_loss
from omnitrain_plugins.qwen_omni.dual_track_talker import continue_as_text

PREFIX = 5  # positions between the prompt and the codec_bos position


@dataclass
class Qwen3TalkerConfig:
    hidden_size: int = 64  # the release: 1024
    layers: int = 2  # 20
    heads: int = 4  # 16
    kv_heads: int = 2  # 2
    head_dim: int | None = None  # 128; None: hidden_size // heads
    projection_dim: int = 128  # text_projection / hidden_projection's inner width (2048)
    moe_ffn_dim: int = 32  # 384
    shared_expert_ffn_dim: int = 64  # 768
    experts: int = 4  # 128
    top_k: int = 2  # 8
    norm_topk_prob: bool = True
    experts_impl: str = "auto"  # grouped | loop | auto (grouped where the widths allow)
    rms_eps: float = 1e-6
    rope_theta: float = 1e6
    mrope_section: list[int] | None = None  # interleaved M-RoPE; None: the default split of head_dim
    router_aux_coef: float = 0.001  # the Talker router's load-balancing loss weight (loss.weights.talker_router)
    residual_weight: float = 1.0  # the code predictor's loss weight (loss.weights.residual_codes)
    accept_hidden_layer: int = 1  # media tokens read the states after this Thinker layer (18 in the release)
    # the codec table: codes 0 .. codebook - 1, then the specials (None: placed after the codes)
    vocab_size: int | None = None  # rows (3072 in the release)
    codec_pad_id: int | None = None
    codec_bos_id: int | None = None
    codec_eos_id: int | None = None
    codec_nothink_id: int | None = None
    codec_think_bos_id: int | None = None
    codec_think_eos_id: int | None = None
    # "name:row" per voice (the release's talker_config.speaker_id); a voice of speech.speakers
    # not named here (a new one) takes the next free row after the specials and the named voices
    speaker_ids: list[str] = field(default_factory=list)
    predictor_layers: int = 1  # 5
    predictor_heads: int = 4  # 16
    predictor_kv_heads: int = 2  # 8
    predictor_head_dim: int | None = None  # 128
    predictor_ffn_dim: int = 128  # 3072
    predictor_rope_theta: float = 1e6


class TalkerLayer(nn.Module):
    def __init__(self, cfg: Qwen3TalkerConfig, head_dim: int, grouped: bool) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(d, cfg.rms_eps), RMSNorm(d, cfg.rms_eps)
        self.self_attn = Attention(d, cfg.heads, cfg.kv_heads, head_dim=head_dim, qk_norm_eps=cfg.rms_eps)
        self.mlp = SharedExpertMoe(d, cfg.moe_ffn_dim, cfg.shared_expert_ffn_dim, cfg.experts, cfg.top_k,
                                   cfg.norm_topk_prob, grouped)

    def forward(self, x: Tensor, mask, rotary, cache: KVCache | None = None, layer: int = 0) -> tuple[Tensor, Tensor]:
        x = x + self.self_attn(self.input_layernorm(x), mask, rotary, cache, layer)
        out, router_logits = self.mlp(self.post_attention_layernorm(x))
        return x + out, router_logits


class ResizeMLP(nn.Module):
    """Thinker width -> Talker width (``text_projection``, ``hidden_projection``)."""

    def __init__(self, cin: int, inner: int, cout: int) -> None:
        super().__init__()
        self.linear_fc1, self.linear_fc2 = nn.Linear(cin, inner), nn.Linear(inner, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class TalkerModel(nn.Module):
    def __init__(self, cfg: Qwen3TalkerConfig, vocab: int, head_dim: int, grouped: bool) -> None:
        super().__init__()
        self.codec_embedding = nn.Embedding(vocab, cfg.hidden_size)
        self.layers = nn.ModuleList(TalkerLayer(cfg, head_dim, grouped) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_eps)


def special_rows(cfg: Qwen3TalkerConfig, codebook: int) -> list[int]:
    """pad, bos, eos, nothink, think_bos, think_eos: the config's rows, else right after the codes."""
    ids = [cfg.codec_pad_id, cfg.codec_bos_id, cfg.codec_eos_id, cfg.codec_nothink_id, cfg.codec_think_bos_id,
           cfg.codec_think_eos_id]
    return [codebook + i if v is None else v for i, v in enumerate(ids)]


def speaker_rows(cfg: Qwen3TalkerConfig, speakers: list[str], codebook: int) -> dict[str, int]:
    """Each voice's row of the codec table: ``speaker_ids``' for the voices it names, the next
    free rows for new ones (in ``speakers`` order); what export writes as ``speaker_id``."""
    named = {}
    for item in cfg.speaker_ids:
        name, sep, row = str(item).rpartition(":")
        if not sep or not row.strip().isdigit():
            raise ValueError(f"talker.speaker_ids: {item!r} is not 'name:row' (e.g. 'ethan:2302')")
        named[name] = int(row)
    free = max([*special_rows(cfg, codebook), *named.values()]) + 1
    rows = {}
    for name in speakers:
        if name in named:
            rows[name] = int(named[name])
        else:
            rows[name], free = free, free + 1
    return rows


@register("talker", "qwen3_moe", config=Qwen3TalkerConfig)
class Qwen3Talker(Talker):
    """Qwen3-Omni's MoE Talker with its code predictor (frames of code groups)."""

    takes_code_groups = True
    build_kwargs = ("code_groups", "speakers")
    block_types = (TalkerLayer,)

    @classmethod
    def named_losses(cls, cfg: Qwen3TalkerConfig) -> dict[str, float]:
        return {"talker_router": cfg.router_aux_coef, "residual_codes": cfg.residual_weight}

    def __init__(self, cfg: Qwen3TalkerConfig, thinker_hidden_size: int, codec_vocab_size: int, position=None,
                 num_speakers: int = 1, code_groups: int = 1, speakers: tuple[str, ...] = ()) -> None:
        super().__init__()
        from omnitrain_plugins.qwen3_omni.moe_thinker import grouped_fits

        self.cfg, self.codebook, self.groups = cfg, codec_vocab_size, code_groups
        n = codec_vocab_size
        self.pad_id, self.bos_id, self.eos_id, self.nothink_id, self.think_bos_id, self.think_eos_id = (
            special_rows(cfg, n))
        names = list(speakers) or [f"voice{i}" for i in range(num_speakers)]
        self.speaker_rows = speaker_rows(cfg, names, n)
        self.speaker_ids = list(self.speaker_rows.values())
        self.vocab_size = cfg.vocab_size or max([n - 1, *self.speaker_ids, self.think_eos_id]) + 1
        if max(self.speaker_ids) >= self.vocab_size:
            raise ValueError(f"talker: the voices {self.speaker_rows} need rows below talker.vocab_size="
                             f"{self.vocab_size}; free rows past the specials are what a new voice takes")
        self.head_dim = cfg.head_dim or cfg.hidden_size // cfg.heads
        self.section = list(cfg.mrope_section or default_section(self.head_dim))
        grouped = cfg.experts_impl == "grouped" or (cfg.experts_impl == "auto" and grouped_fits(cfg))
        self.model = TalkerModel(cfg, self.vocab_size, self.head_dim, grouped)
        self.text_projection = ResizeMLP(thinker_hidden_size, cfg.projection_dim, cfg.hidden_size)
        self.hidden_projection = ResizeMLP(thinker_hidden_size, cfg.projection_dim, cfg.hidden_size)
        self.codec_head = nn.Linear(cfg.hidden_size, self.vocab_size, bias=False)
        # the Thinker's tts_bos, tts_eos, tts_pad rows (a module: ZeRO-3 gathers its weight when called)
        self.tts_embed = nn.Embedding(3, thinker_hidden_size)
        nn.init.normal_(self.tts_embed.weight, std=0.02)
        self.code_predictor = CodePredictor(CodePredictorShape(
            cfg.hidden_size, cfg.predictor_layers, cfg.predictor_heads, cfg.predictor_kv_heads,
            cfg.predictor_head_dim or cfg.hidden_size // cfg.predictor_heads, cfg.predictor_ffn_dim, code_groups,
            codec_vocab_size, cfg.rms_eps, cfg.predictor_rope_theta))

    def context_spec(self) -> ContextSpec:
        return ContextSpec(layer=self.cfg.accept_hidden_layer, add_embeddings=False, text_as_embeddings=True,
                           turns=("user",), positions="closed")

    def sequence_length(self, prompt: int, reply: int, codes: int) -> int:
        return prompt + PREFIX + codes + 1

    # ---- the sequence ------------------------------------------------------------
    def _tts(self) -> Tensor:
        """The projected tts_bos, tts_eos and tts_pad rows (3, D)."""
        return self.text_projection(self.tts_embed(torch.arange(3, device=self.codec_head.weight.device)))

    def _prompt(self, ctx: TalkerContext) -> Tensor:
        """The prompt (text and media projected apart) and the 5 prefix positions."""
        media = ctx.prompt_media if ctx.prompt_media is not None else torch.zeros_like(ctx.prompt_mask)
        prompt = torch.where(media[..., None], self.hidden_projection(ctx.prompt), self.text_projection(ctx.prompt))
        speaker = torch.tensor(self.speaker_ids, device=ctx.speaker.device)[ctx.speaker]
        fixed = torch.tensor([self.nothink_id, self.think_bos_id, self.think_eos_id], device=speaker.device)
        codec = torch.cat([fixed.expand(len(speaker), 3), speaker[:, None],
                           torch.full_like(speaker, self.pad_id)[:, None]], 1)
        bos, _, pad = self._tts()
        text = torch.stack([pad] * 4 + [bos])
        return torch.cat([prompt, text[None] + self.model.codec_embedding(codec)], 1)

    def _text_track(self, ctx: TalkerContext, start: int, n: int) -> Tensor:
        """(S, n, D) the text added at frame positions start .. start + n - 1: reply token j
        at position j, then tts_eos, then tts_pad. The reply's last token (its closing eos)
        is not spoken: transformers' ``generate`` never has the Thinker's states of it."""
        S, R = ctx.reply_mask.shape
        spoken = (ctx.reply_mask.sum(1) - 1).clamp_min(1)
        j = torch.arange(start, start + n, device=spoken.device)[None].expand(S, n)
        rows = ctx.reply.gather(1, j.clamp(max=R - 1)[..., None].expand(-1, -1, ctx.reply.shape[-1]))
        _, eos, pad = self._tts()
        out = torch.where((j < spoken[:, None])[..., None], self.text_projection(rows), pad)
        return torch.where((j == spoken[:, None])[..., None], eos.expand_as(out), out)

    def frame_embedding(self, frames: Tensor) -> Tensor:
        """(..., Q) codes -> (..., D): group 0 from the Talker's table, the rest from the
        predictor's (a bos frame: the bos row alone)."""
        first = self.model.codec_embedding(frames[..., 0])
        rest = sum(self.code_predictor.embed(frames[..., g], g) for g in range(1, self.groups))
        return torch.where((frames[..., :1] == self.bos_id), first, first + rest)

    def _run(self, x: Tensor, positions: Tensor, mask, cache: KVCache | None = None,
             keep: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        rotary = multimodal_rotary(positions, self.head_dim, self.cfg.rope_theta, self.section, interleaved=True)
        logits = []
        for i, layer in enumerate(self.model.layers):
            x, router = layer(x, mask, rotary, cache, i)
            logits.append(router)
        aux = balance_loss(logits, self.cfg.top_k, keep) if keep is not None else None
        return self.model.norm(x), aux

    # ---- training --------------------------------------------------------------
    def forward(self, ctx: TalkerContext, codec_in: Tensor, codec_mask: Tensor) -> TalkerOutput:
        """codec_in (S, C, Q) = [bos, c_0 .. c_{m-1}] -> logits (S, C, Q, vocab): group 0 from
        the codec head (position j predicts frame j, the last one eos), groups 1.. from the
        code predictor teacher-forced on frame j's codes (``codec_in[:, j + 1]``)."""
        if codec_in.dim() == 2:
            codec_in = codec_in[..., None]
        S, C, Q = codec_in.shape
        P = ctx.prompt.shape[1]
        frames = self.frame_embedding(codec_in) + self._text_track(ctx, 0, C)
        x = torch.cat([self._prompt(ctx), frames], 1)
        valid = torch.cat([ctx.prompt_mask, torch.ones_like(codec_mask[:, :1]).expand(S, PREFIX), codec_mask], 1)
        positions = continue_as_text(ctx.prompt_positions, PREFIX + C)
        hidden, router = self._run(x, positions, doc_causal_mask(valid.long()), keep=valid)
        hidden = hidden[:, P + PREFIX:]
        first = self.codec_head(hidden)
        logits = first[:, :, None].expand(S, C, Q, self.vocab_size).clone() if Q > 1 else first[:, :, None]
        if Q > 1:
            # frame j's codes (the last position's and pad frames' are unused)
            target = torch.cat([codec_in[:, 1:], codec_in[:, -1:]], 1).clamp(max=self.codebook - 1)
            residual = self.code_predictor.teacher_forced(
                hidden.reshape(S * C, -1), self.model.codec_embedding(target[..., 0]).reshape(S * C, -1),
                target.reshape(S * C, Q))
            low = torch.finfo(residual.dtype).min
            logits[:, :, 1:] = F.pad(residual.view(S, C, Q - 1, -1), (0, self.vocab_size - self.codebook), value=low)
        return TalkerOutput(logits, {"talker_router": router})

    def loss(self, logits: Tensor, targets: Tensor, divisor: Tensor | None = None) -> dict[str, Tensor]:
        """``codec``: group 0 (eos included), per predicted frame; ``residual_codes``: the code
        predictor's groups 1.., their mean per frame (frames of codes, not eos)."""
        if targets.dim() == 2:
            return {"codec": masked_cross_entropy(logits[:, :, 0], targets, divisor)}
        first = targets[..., 0]
        out = {"codec": masked_cross_entropy(logits[..., 0, :], first, divisor)}
        codes = (first != IGNORE_INDEX) & (first != self.eos_id)
        rest = targets[..., 1:].masked_fill(~codes[..., None], IGNORE_INDEX)
        count = codes.sum().clamp_min(1) if divisor is None else divisor
        out["residual_codes"] = masked_cross_entropy(logits[..., 1:, :], rest, count) / max(1, self.groups - 1)
        return out

    # ---- inference -------------------------------------------------------------
    @torch.no_grad()
    def generate(self, ctx: TalkerContext, max_tokens: int, **sampling: Any) -> Tensor:
        sampling = dict(sampling)
        min_tokens = int(sampling.pop("min_tokens", 0))
        S, P = ctx.prompt_mask.shape
        device = ctx.prompt.device
        bos = torch.full((S, 1, self.groups), self.bos_id, dtype=torch.long, device=device)
        x = torch.cat([self._prompt(ctx), self.frame_embedding(bos) + self._text_track(ctx, 0, 1)], 1)
        valid = torch.cat([ctx.prompt_mask, torch.ones(S, PREFIX + 1, dtype=torch.bool, device=device)], 1)
        positions = continue_as_text(ctx.prompt_positions, PREFIX + 1)
        cache = KVCache()
        hidden = self._run(x, positions, doc_causal_mask(valid.long()), cache)[0][:, -1]
        position = positions[:, :, -1:]
        specials = [i for i in range(self.codebook, self.vocab_size) if i != self.eos_id]
        history = torch.zeros(S, 0, dtype=torch.long, device=device)
        done = torch.zeros(S, dtype=torch.bool, device=device)
        frames = []
        for j in range(max_tokens):
            suppress = specials + ([self.eos_id] if j < min_tokens else [])
            first = sample_next(self.codec_head(hidden).float(), history=history, suppress=suppress, **sampling)
            ends = first == self.eos_id
            rest, rest_embed = self.code_predictor.generate(
                hidden, self.model.codec_embedding(first.clamp(max=self.codebook - 1)),
                lambda logits: sample_next(logits.float(), **{k: v for k, v in sampling.items()
                                                             if k in ("temperature", "top_k", "top_p", "generator")}))
            frame = torch.cat([first[:, None], rest], 1)
            frame = torch.where(ends[:, None], torch.full_like(frame, self.eos_id), frame)
            frame = torch.where(done[:, None], torch.full_like(frame, self.pad_id), frame)
            frames.append(frame)
            done = done | ends
            if bool(done.all()) or j + 1 == max_tokens:
                break
            history = torch.cat([history, first[:, None]], 1)
            x = (self.model.codec_embedding(first) + rest_embed)[:, None] + self._text_track(ctx, j + 1, 1)
            valid = torch.cat([valid, torch.ones_like(valid[:, :1])], 1)
            position = position + 1
            hidden = self._run(x, position, valid[:, None, None, :], cache)[0][:, -1]
        codes = torch.stack(frames, 1) if frames else torch.zeros(S, 0, self.groups, dtype=torch.long, device=device)
        codes = codes.masked_fill(codes == self.eos_id, self.pad_id)
        return codes if self.groups > 1 else codes[..., 0]
