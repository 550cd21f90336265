"""Qwen2.5-Omni token2wav DiT: codec tokens -> mel by conditional flow matching, with
block-wise sliding-window attention so it can decode chunk by chunk.

As in transformers' ``Qwen2_5OmniToken2WavDiTModel``:

* each frame's input is [noisy mel | ECAPA embedding of a reference mel | the code's
  embedding (each code repeated to ``mel_frames_per_code`` frames) | speaker vector],
  projected to the model width;
* timestep (x1000, 256 sinusoids, MLP) modulates every block by AdaLN-zero (shift,
  scale, gate before attention and MLP) and the output layer (scale, shift);
* attention is block-wise: frames form blocks of ``block_size`` counted from frame 0;
  every layer sees its own block, ``look_backward_layers`` also the block before and
  ``look_ahead_layers`` the block after. The receptive field of the whole stack is
  len(back) blocks back and len(ahead) blocks ahead, which chunked decoding relies on;
* rotary positions on the first attention head only, interleaved pairs (as released);
* classifier-free guidance drops codes (to id 0), the speaker vector and the reference
  (zeros) together.

Speakers are a learned table (transformers takes the vector from ``spk_dict.pt``; the
weight mapping copies it in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import DiT, SpeechCondition, param_dtype, register
from omnitrain.nn.ecapa import ECAPA


@dataclass
class FlowDiTConfig:
    dim: int = 128  # Qwen2.5-Omni 7B: 1024
    layers: int = 6  # 7B: 22
    heads: int = 4  # 7B: 16
    head_dim: int = 32  # 7B: 64
    ff_mult: int = 2
    code_dim: int = 64  # 7B: 512
    mel_frames_per_code: int = 2
    block_size: int = 24  # frames
    look_backward_layers: list[int] = field(default_factory=lambda: [0, 5])  # 7B: [0, 20]
    look_ahead_layers: list[int] = field(default_factory=lambda: [3])  # 7B: [10]
    speaker_dim: int = 32  # 7B: 192
    ref_dim: int = 32  # ECAPA output, 7B: 128
    ecapa_channels: list[int] = field(default_factory=lambda: [64, 64, 64, 64, 192])
    ecapa_kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    ecapa_dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    ecapa_attention_channels: int = 32
    ecapa_res2net_scale: int = 2
    ecapa_se_channels: int = 32
    dropout: float = 0.1
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("look_backward_layers", "look_ahead_layers"):
            bad = [i for i in getattr(self, name) if not 0 <= i < self.layers]
            if bad:
                raise ValueError(f"dit.{name}={getattr(self, name)}: layers {bad} do not exist "
                                 f"(dit.layers={self.layers}, so use 0..{self.layers - 1})")
        if self.head_dim % 2:
            raise ValueError(f"dit.head_dim={self.head_dim} must be even (rotary pairs)")
        if sum(self.ecapa_channels[1:-1]) != self.ecapa_channels[-1]:
            raise ValueError(f"dit.ecapa_channels={self.ecapa_channels}: the last must be the sum "
                             "of the middle ones")


def timestep_features(t: Tensor, dim: int = 256) -> Tensor:
    """Flow time in [0, 1] -> (B, dim) sinusoids of 1000 t, [sin | cos] (Qwen/F5-TTS)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


def rotate_first_head(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, H, T, Dh): rotate interleaved pairs (2i, 2i+1) of head 0 only."""
    head = x[:, :1]
    even, odd = head[..., 0::2], head[..., 1::2]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2)
    return torch.cat([rotated, x[:, 1:]], dim=1)


class BlockAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q_proj = nn.Linear(dim, heads * head_dim)
        self.k_proj = nn.Linear(dim, heads * head_dim)
        self.v_proj = nn.Linear(dim, heads * head_dim)
        self.o_proj = nn.Linear(heads * head_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        B, T, _ = x.shape
        q, k, v = (p(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = rotate_first_head(q, cos, sin), rotate_first_head(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.dropout(self.o_proj(out.transpose(1, 2).reshape(B, T, -1)))


class DiTBlock(nn.Module):
    """AdaLN-zero block whose attention sees ``back`` blocks before and ``ahead`` after."""

    def __init__(self, cfg: FlowDiTConfig, back: int, ahead: int) -> None:
        super().__init__()
        self.back, self.ahead = back, ahead
        self.modulation = nn.Linear(cfg.dim, 6 * cfg.dim)
        self.attn = BlockAttention(cfg.dim, cfg.heads, cfg.head_dim, cfg.dropout)
        inner = cfg.dim * cfg.ff_mult
        self.ff = nn.Sequential(nn.Linear(cfg.dim, inner), nn.GELU(approximate="tanh"),
                                nn.Dropout(cfg.dropout), nn.Linear(inner, cfg.dim))

    def forward(self, h: Tensor, temb: Tensor, mask: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(F.silu(temb)).chunk(6, -1)
        y = F.layer_norm(h, h.shape[-1:], eps=1e-6) * (1 + scale_a[:, None]) + shift_a[:, None]
        h = h + gate_a[:, None] * self.attn(y, mask, cos, sin)
        y = F.layer_norm(h, h.shape[-1:], eps=1e-6) * (1 + scale_m[:, None]) + shift_m[:, None]
        return h + gate_m[:, None] * self.ff(y)


@register("dit", "flow_dit", config=FlowDiTConfig)
class FlowDiT(DiT):
    """Qwen2.5-Omni token2wav DiT: block-wise sliding-window attention, speaker + reference."""

    block_types = (DiTBlock,)

    def __init__(self, cfg: FlowDiTConfig, codec_vocab_size: int, n_mels: int, num_speakers: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_mels = n_mels
        self.mel_frames_per_code = cfg.mel_frames_per_code
        self.receptive_field = (cfg.block_size, len(cfg.look_backward_layers), len(cfg.look_ahead_layers))
        self.time_mlp = nn.Sequential(nn.Linear(256, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.code_embed = nn.Embedding(codec_vocab_size + 1, cfg.code_dim)
        self.speaker_embed = nn.Embedding(num_speakers, cfg.speaker_dim)
        self.ref_encoder = ECAPA(n_mels, cfg.ref_dim, cfg.ecapa_channels, cfg.ecapa_kernel_sizes,
                                 cfg.ecapa_dilations, cfg.ecapa_attention_channels,
                                 cfg.ecapa_res2net_scale, cfg.ecapa_se_channels)
        self.in_proj = nn.Linear(n_mels + cfg.ref_dim + cfg.code_dim + cfg.speaker_dim, cfg.dim)
        self.blocks = nn.ModuleList(
            DiTBlock(cfg, int(i in cfg.look_backward_layers), int(i in cfg.look_ahead_layers))
            for i in range(cfg.layers)
        )
        self.final_modulation = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.out = nn.Linear(cfg.dim, n_mels)
        # AdaLN-zero: every block starts as the identity, the output at zero
        for layer in [b.modulation for b in self.blocks] + [self.final_modulation, self.out]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def reference_embedding(self, cond: SpeechCondition, keep: Tensor) -> Tensor:
        """ECAPA of each item's reference at its own length, all items in one call; where
        dropped (``keep`` False) or absent (length 0), the ECAPA of an all-zeros mel, the
        unconditional branch. Nothing is read back from the device."""
        dtype, need = param_dtype(self), self.ref_encoder.min_frames
        n = cond.reference_lengths.to(keep.device)
        S, T, M = cond.reference.shape
        width = max(T, need)
        # a reference shorter than the reflect padding repeats its edge frame up to ``need``
        src = torch.arange(width, device=keep.device)[None].minimum((n - 1).clamp_min(0)[:, None])
        refs = cond.reference.to(dtype).gather(1, src[..., None].expand(-1, -1, M))
        lengths = torch.cat([n.clamp_min(need), torch.full((1,), need, device=n.device, dtype=n.dtype)])
        emb = self.ref_encoder(torch.cat([refs, refs.new_zeros(1, width, M)]), lengths)
        return torch.where((keep & (n > 0))[:, None], emb[:S], emb[S:])

    def forward(self, x: Tensor, t: Tensor, codes: Tensor, code_mask: Tensor, drop_cond: Tensor,
                cond: SpeechCondition | None = None, offset: int = 0) -> Tensor:
        B, T, _ = x.shape
        k = self.mel_frames_per_code
        if codes.shape[1] * k != T:
            raise ValueError(f"mel has {T} frames; {codes.shape[1]} codes need {codes.shape[1] * k}")
        if cond is None:
            cond = SpeechCondition.none(B, self.n_mels, x.device)
        dtype = param_dtype(self)  # bf16 under DeepSpeed/FSDP bf16 weights; no-op otherwise
        x = x.to(dtype)
        keep = ~drop_cond
        codes = codes.masked_fill(~keep[:, None] | ~code_mask, 0)  # dropped code = id 0, as Qwen
        code_e = self.code_embed(codes).repeat_interleave(k, dim=1)
        speaker = self.speaker_embed(cond.speaker) * keep[:, None].to(dtype)
        ref = self.reference_embedding(cond, keep)
        # under autocast the ECAPA output is bf16 while x and the tables are fp32: one dtype
        h = self.in_proj(torch.cat([x, ref[:, None].expand(-1, T, -1).to(dtype), code_e.to(dtype),
                                    speaker[:, None].expand(-1, T, -1).to(dtype)], dim=-1))
        temb = self.time_mlp(timestep_features(t).to(dtype))
        frames = offset + torch.arange(T, device=x.device)
        inv = 1.0 / self.cfg.rope_theta ** (torch.arange(0, self.cfg.head_dim, 2, device=x.device).float()
                                            / self.cfg.head_dim)
        angles = frames.float()[:, None] * inv
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        block = frames // self.cfg.block_size
        diff = block[None, :] - block[:, None]  # [query, key]: key block - query block
        valid = code_mask.repeat_interleave(k, dim=1)[:, None, None, :]
        eye = torch.eye(T, dtype=torch.bool, device=x.device)
        masks: dict[tuple[int, int], Tensor] = {}
        for blk in self.blocks:
            key = (blk.back, blk.ahead)
            if key not in masks:
                masks[key] = ((diff >= -blk.back) & (diff <= blk.ahead) & valid) | eye
            h = blk(h, temb, masks[key], cos, sin)
        scale, shift = self.final_modulation(F.silu(temb)).chunk(2, dim=-1)
        h = F.layer_norm(h, h.shape[-1:], eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
        return self.out(h)
