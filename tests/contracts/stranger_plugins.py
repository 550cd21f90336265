"""Plugins a stranger would write against omnitrain's contracts alone (``omnitrain.api``),
loaded the way a user loads theirs (``plugins=[tests.contracts.stranger_plugins]``):

- an audio encoder that returns two inner levels for the Thinker and an auxiliary loss
  (``EncoderOutput``);
- a Thinker that adds those levels after its first layers (``takes_side_inputs``, as
  Qwen3-Omni's deepstack), gives its inner layers' states (``takes_output_layers``) and
  returns an auxiliary loss (``ThinkerOutput``);
- a Talker that reads as Qwen3-Omni's does (``ContextSpec``): text tokens' embeddings, the
  Thinker's layer 1 at media tokens (each through its own projection, ``prompt_media``), user
  turns only at positions closed up over them; returns an auxiliary loss from its forward
  (``TalkerOutput``) and owns its loss: the cross-entropy plus a label-smoothing term
  (``Talker.loss``);
- a Thinker whose MLPs are a top-1 mixture of experts, which says how many weights one
  position runs through (``active_params``: FLOPs and MFU count those);
- a vocoder that decodes codes straight to a waveform (``CodesVocoder``, with ``dit=none``),
  which asks for the codec's vocabulary, the speakers and the code groups (``build_kwargs``);
- a codec with 3 code groups per frame and a Talker that speaks them (``takes_code_groups``):
  a frame in is the sum of its groups' embeddings, a frame out one head per group;
- a DiT that returns an auxiliary loss with its velocity (``DiTOutput``).

Each named loss is declared with its coefficient (``named_losses``). Nothing here is
imported by omnitrain; the core reaches it only through the contracts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnitrain.api import (
    CodesVocoder,
    ContextSpec,
    DiTOutput,
    EncoderOutput,
    SideInputs,
    SwiGLU,
    TalkerOutput,
    ThinkerOutput,
    doc_causal_mask,
    register,
)
from omnitrain.nn.masked_ce import masked_cross_entropy
from omnitrain.tokens import IGNORE_INDEX
from omnitrain_plugins.full_dit import FullDiT, FullDiTConfig
from omnitrain_plugins.mel_conv_audio import MelConvAudioConfig, MelConvAudioEncoder
from omnitrain_plugins.pitch_codec import PitchCodec, PitchCodecConfig
from omnitrain_plugins.prefix_talker import PrefixTalker, PrefixTalkerConfig
from omnitrain_plugins.qwen_omni.qwen2_thinker import Qwen2Thinker, Qwen2ThinkerConfig

LEVELS = 2


@dataclass
class LeveledAudioConfig(MelConvAudioConfig):
    spread_coef: float = 0.05


@register("audio_encoder", "stranger_leveled", config=LeveledAudioConfig)
class LeveledAudio(MelConvAudioEncoder):
    """The baseline encoder's tokens, plus ``LEVELS`` projections of them for the Thinker's
    side inputs, plus ``audio_spread``: the tokens' mean square (keeps them small)."""

    def __init__(self, cfg: LeveledAudioConfig, out_dim: int) -> None:
        super().__init__(cfg, out_dim)
        self.level_proj = nn.ModuleList(nn.Linear(out_dim, out_dim) for _ in range(LEVELS))

    @classmethod
    def named_losses(cls, cfg: LeveledAudioConfig) -> dict[str, float]:
        return {"audio_spread": cfg.spread_coef}

    def forward(self, features: Tensor, lengths: Tensor) -> EncoderOutput:
        tokens = super().forward(features, lengths)
        spread = tokens.float().pow(2).mean() if tokens.numel() else tokens.sum() * 0.0
        return EncoderOutput(tokens, [proj(tokens) for proj in self.level_proj], {"audio_spread": spread})


@dataclass
class SideThinkerConfig(Qwen2ThinkerConfig):
    balance_coef: float = 0.01


@register("thinker", "stranger_side", config=SideThinkerConfig)
class SideThinker(Qwen2Thinker):
    """Qwen2 blocks with level k of the side inputs added after block k, inner states on
    request, and ``balance``: the mean square of the final states (a stand-in for a
    router's load-balancing term: a differentiable mean over the forward's tokens)."""

    takes_side_inputs = True
    takes_output_layers = True

    @classmethod
    def named_losses(cls, cfg: SideThinkerConfig) -> dict[str, float]:
        return {"balance": cfg.balance_coef}

    def _layers(self, x: Tensor, mask, rotary, side: SideInputs | None, output_layers: tuple[int, ...],
                cache=None) -> ThinkerOutput:
        states = {0: x} if 0 in output_layers else {}
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, rotary) if cache is None else layer(x, mask, rotary, cache, i)
            if side is not None and i < len(side.features) and side.mask.shape == x.shape[:2]:
                x = x.masked_scatter(side.mask[..., None], x[side.mask] + side.features[i].to(x.dtype))
            if i + 1 in output_layers:
                states[i + 1] = x
        hidden = self.norm(x)
        return ThinkerOutput(hidden, states, {"balance": hidden.float().pow(2).mean()})

    def forward(self, inputs_embeds: Tensor, position_ids: Tensor, doc_ids: Tensor, doc_runs=None,
                side_inputs: SideInputs | None = None, output_layers: tuple[int, ...] = ()) -> ThinkerOutput:
        from omnitrain.nn.varlen import DocAttention

        rotary = self.position.rotary(position_ids, self.head_dim)
        mask = DocAttention.build(doc_ids, self.cfg.attention, doc_runs)
        return self._layers(inputs_embeds, mask, rotary, side_inputs, output_layers)

    def step(self, inputs_embeds: Tensor, position_ids: Tensor, cache, side_inputs: SideInputs | None = None,
             output_layers: tuple[int, ...] = ()) -> ThinkerOutput:
        rotary = self.position.rotary(position_ids, self.head_dim)
        n, past = inputs_embeds.shape[1], cache.length
        mask = None if n == 1 else torch.ones(n, past + n, dtype=torch.bool,
                                              device=inputs_embeds.device).tril(past)[None, None]
        return self._layers(inputs_embeds, mask, rotary, side_inputs, output_layers, cache)


@dataclass
class OwnLossTalkerConfig(PrefixTalkerConfig):
    smooth_coef: float = 0.1
    z_coef: float = 1e-3


@register("talker", "stranger_own_loss", config=OwnLossTalkerConfig)
class OwnLossTalker(PrefixTalker):
    """The prefix Talker reading as Qwen3-Omni's Talker does (``context_spec``), with its own
    loss: the cross-entropy (``codec``) plus ``codec_smooth``, each predicted position's
    cross-entropy against the uniform distribution (label smoothing's term, per position as
    the contract asks); and ``talker_z`` from its forward, the mean squared log-partition of
    its logits (a z-loss, a mean over the forward)."""

    @classmethod
    def named_losses(cls, cfg: OwnLossTalkerConfig) -> dict[str, float]:
        return {"codec_smooth": cfg.smooth_coef, "talker_z": cfg.z_coef}

    def context_spec(self) -> ContextSpec:
        return ContextSpec(layer=1, add_embeddings=False, text_as_embeddings=True, turns=("user",),
                           positions="closed")

    def forward(self, ctx, codec_in: Tensor, codec_mask: Tensor) -> TalkerOutput:
        logits = super().forward(ctx, codec_in, codec_mask)
        z = torch.logsumexp(logits.float(), -1)[codec_mask].pow(2).mean()
        return TalkerOutput(logits, {"talker_z": z})

    def loss(self, logits: Tensor, targets: Tensor, divisor: Tensor | None = None) -> dict[str, Tensor]:
        """Per predicted position (a frame: with code groups, summed over its groups)."""
        valid = targets != IGNORE_INDEX
        positions = valid if valid.dim() == 2 else valid[..., 0]
        count = positions.sum().clamp_min(1) if divisor is None else divisor
        uniform = -torch.log_softmax(logits.float(), -1).mean(-1)
        return {"codec": masked_cross_entropy(logits, targets, count), "codec_smooth": (uniform * valid).sum() / count}


class TopOneExperts(nn.Module):
    """A mixture of ``experts`` SwiGLU MLPs, each position run through the one its router
    picks (scaled by the router's probability, so the router trains)."""

    def __init__(self, dim: int, hidden: int, experts: int) -> None:
        super().__init__()
        self.router = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(dim, hidden) for _ in range(experts))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        probs = torch.softmax(self.router(flat).float(), -1)
        weight, choice = probs.max(-1)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows = torch.nonzero(choice == e)[:, 0]
            if rows.numel():
                out = out.index_add(0, rows, expert(flat[rows]) * weight[rows, None].to(flat.dtype))
        return out.view_as(x)


@dataclass
class MoEThinkerConfig(Qwen2ThinkerConfig):
    experts: int = 4


@register("thinker", "stranger_moe", config=MoEThinkerConfig)
class MoEThinker(Qwen2Thinker):
    """Qwen2 blocks whose MLP is a top-1 mixture of experts: a position runs through the
    shared weights, the router and one expert, which ``active_params`` says."""

    def __init__(self, cfg: MoEThinkerConfig, vocab_size: int, position) -> None:
        super().__init__(cfg, vocab_size, position)
        for layer in self.layers:
            layer.mlp = TopOneExperts(cfg.hidden_size, cfg.ffn_dim, cfg.experts)

    def active_params(self) -> int:
        dense = sum(p.numel() for name, p in self.named_parameters() if ".experts." not in name)
        dense -= self.embed_tokens.weight.numel()
        if self.lm_head.weight is self.embed_tokens.weight:  # tied: counted once, as a matmul
            dense += self.lm_head.weight.numel()
        one_expert = sum(p.numel() for p in self.layers[0].mlp.experts[0].parameters())
        return dense + len(self.layers) * one_expert


@dataclass
class CausalCodesConfig:
    dim: int = 32
    samples_per_code: int = 640  # the pitch codec's 25 codes/s at 16 kHz


@register("vocoder", "stranger_codes", config=CausalCodesConfig)
class CausalCodesVocoder(CodesVocoder):
    """Codes straight to a waveform (as Code2Wav, with ``dit=none``): each code's embedding
    plus its speaker's, a causal convolution over the last 3 codes, then each position
    spread to ``samples_per_code`` samples. Its output at a code depends on 2 codes before
    it and none after, so streaming with 2 codes of left context equals whole decoding."""

    left_context_codes = 2
    takes_code_groups = True
    build_kwargs = ("codec_vocab_size", "num_speakers", "code_groups")

    def __init__(self, cfg: CausalCodesConfig, mel, codec_vocab_size: int, num_speakers: int = 1,
                 code_groups: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(codec_vocab_size, cfg.dim)
        self.group_embed = nn.Embedding(code_groups, cfg.dim)  # each group's codes embedded apart
        self.speaker = nn.Embedding(num_speakers, cfg.dim)
        self.conv = nn.Conv1d(cfg.dim, cfg.dim, kernel_size=3)
        self.out = nn.Linear(cfg.dim, cfg.samples_per_code)

    @classmethod
    def samples_per_code(cls, cfg: CausalCodesConfig) -> int:
        return cfg.samples_per_code

    def decode(self, codes: Tensor, code_mask: Tensor, cond=None) -> Tensor:
        x = self.embed(codes.clamp(0, self.embed.num_embeddings - 1))
        if codes.dim() == 3:  # frames of several code groups: the sum of each group's embedding
            x = (x + self.group_embed.weight).sum(2)
        x = x * code_mask[..., None]
        if cond is not None:
            x = x + self.speaker(cond.speaker.to(codes.device))[:, None]
        x = self.conv(nn.functional.pad(x.transpose(1, 2), (2, 0))).transpose(1, 2)  # causal: 2 codes back
        wave = torch.tanh(self.out(nn.functional.gelu(x)))  # (B, C, samples_per_code)
        return (wave * code_mask[..., None]).flatten(1)


GROUPS = 3


@register("codec", "stranger_groups", config=PitchCodecConfig)
class GroupedPitchCodec(PitchCodec):
    """The pitch codec with ``GROUPS`` codes per frame: its code, then two codes derived from
    it (as a residual quantiser's finer groups would follow the first)."""

    groups = GROUPS

    def encode(self, wave: Tensor) -> Tensor:
        first = super().encode(wave)
        return torch.stack([(first * (2 * g + 1) + g) % self.vocab_size for g in range(GROUPS)], -1)

    def decode(self, tokens: Tensor) -> Tensor:
        return super().decode(tokens[:, 0])


@register("talker", "stranger_groups", config=OwnLossTalkerConfig)
class GroupsTalker(OwnLossTalker):
    """``OwnLossTalker`` over frames of ``code_groups`` codes: a frame's input is the sum of
    its groups' embeddings (each group its own table), its output one head per group; its
    losses per frame, summed over the groups."""

    takes_code_groups = True
    build_kwargs = ("code_groups",)

    def __init__(self, cfg: OwnLossTalkerConfig, thinker_hidden_size: int, codec_vocab_size: int,
                 position=None, num_speakers: int = 1, code_groups: int = 1) -> None:
        super().__init__(cfg, thinker_hidden_size, codec_vocab_size, position, num_speakers)
        self.groups = code_groups
        self.codec_embed = nn.ModuleList(nn.Embedding(self.vocab_size, cfg.dim) for _ in range(code_groups))
        self.head = nn.Linear(cfg.dim, code_groups * self.vocab_size, bias=False)
        self.media_proj = nn.Linear(thinker_hidden_size, cfg.dim)  # Qwen3-Omni: hidden_projection

    def forward(self, ctx, codec_in: Tensor, codec_mask: Tensor) -> TalkerOutput:
        logits = self._run(ctx, codec_in, codec_mask)
        z = torch.logsumexp(logits.float(), -1)[codec_mask].pow(2).mean()
        return TalkerOutput(logits, {"talker_z": z})

    def _run(self, ctx, codec_in: Tensor, codec_mask: Tensor) -> Tensor:
        """[prompt (text and media projected apart) | reply | frames] through the layers."""
        media = ctx.prompt_media[..., None]
        prompt = torch.where(media, self.media_proj(ctx.prompt), self.reply_proj(ctx.prompt))
        frames = sum(embed(codec_in[..., g]) for g, embed in enumerate(self.codec_embed))
        x = torch.cat([prompt, self.reply_proj(ctx.reply), frames], dim=1)
        valid = torch.cat([ctx.prompt_mask, ctx.reply_mask, codec_mask], dim=1).long()
        pos = (valid.cumsum(1) - 1).clamp_min(0)
        mask = doc_causal_mask(valid)
        rotary = self._rotary(pos)
        for layer in self.layers:
            x = layer(x, mask, rotary)
        out = self.head(self.norm(x[:, x.shape[1] - codec_in.shape[1]:]))
        return out.view(*out.shape[:2], self.groups, self.vocab_size)

    @torch.no_grad()
    def generate(self, ctx, max_tokens: int, **sampling) -> Tensor:
        """Greedy, a frame at a time (every group's most likely code); eos in group 0 ends."""
        B = ctx.reply.shape[0]
        out = torch.full((B, 1, self.groups), self.bos_id, dtype=torch.long, device=ctx.reply.device)
        done = torch.zeros(B, dtype=torch.bool, device=ctx.reply.device)
        for step in range(max_tokens):
            logits = self._run(ctx, out, torch.ones(out.shape[:2], dtype=torch.bool, device=out.device))[:, -1]
            logits[..., [self.bos_id, self.pad_id]] = float("-inf")
            logits[:, 1:, self.eos_id] = float("-inf")  # group 0 decides the end
            if step < int(sampling.get("min_tokens", 0)):
                logits[..., self.eos_id] = float("-inf")
            frame = logits.argmax(-1)
            ends = frame[:, 0] == self.eos_id
            frame = torch.where(ends[:, None], torch.full_like(frame, self.eos_id), frame)
            frame = torch.where(done[:, None], torch.full_like(frame, self.pad_id), frame)
            done |= ends
            out = torch.cat([out, frame[:, None]], dim=1)
            if done.all():
                break
        codes = out[:, 1:]
        return codes.masked_fill(codes == self.eos_id, self.pad_id)


@dataclass
class EnergyDiTConfig(FullDiTConfig):
    energy_coef: float = 0.02


@register("dit", "stranger_energy", config=EnergyDiTConfig)
class EnergyDiT(FullDiT):
    """The baseline DiT returning ``dit_energy`` with its velocity: the velocity's mean
    square over the real frames (a regulariser of the kind a DiT plugin may add)."""

    @classmethod
    def named_losses(cls, cfg: EnergyDiTConfig) -> dict[str, float]:
        return {"dit_energy": cfg.energy_coef}

    def forward(self, x: Tensor, t: Tensor, codes: Tensor, code_mask: Tensor, drop_cond: Tensor,
                cond=None, offset: int = 0) -> DiTOutput:
        velocity = super().forward(x, t, codes, code_mask, drop_cond, cond, offset)
        frames = code_mask.repeat_interleave(self.mel_frames_per_code, dim=1)
        return DiTOutput(velocity, {"dit_energy": velocity.float().pow(2).mean(-1)[frames].mean()})
