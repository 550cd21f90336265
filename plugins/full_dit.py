"""A plain DiT for token-to-mel flow matching: full attention, AdaLN-zero timesteps.

The baseline of the ``dit`` slot. Each codec token is repeated to
``mel_frames_per_code`` frames and concatenated with the noisy mel; blocks are
modulated by the flow time (shift/scale/gate, zero-initialised gates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import (
    Attention,
    DiT,
    SpeechCondition,
    SwiGLU,
    param_dtype,
    register,
    segment_mask,
    sinusoidal_embedding,
)


@dataclass
class FullDiTConfig:
    dim: int = 128
    layers: int = 3
    heads: int = 4
    ffn_dim: int = 256
    mel_frames_per_code: int = 2


class AdaLNZeroBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.attn = Attention(dim, heads)
        self.mlp = SwiGLU(dim, ffn_dim)
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, cond: Tensor, mask: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond))[:, None].chunk(6, -1)
        h = F.layer_norm(x, x.shape[-1:]) * (1 + scale1) + shift1
        x = x + gate1 * self.attn(h, mask)
        h = F.layer_norm(x, x.shape[-1:]) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


@register("dit", "full_dit", config=FullDiTConfig)
class FullDiT(DiT):
    """DiT with full attention over the utterance; baseline token2wav.

    Conditions on the codes only (no speaker, no reference), and every frame sees the
    whole utterance, so it decodes only once all codes are known.
    """

    block_types = (AdaLNZeroBlock,)

    def __init__(self, cfg: FullDiTConfig, codec_vocab_size: int, n_mels: int, num_speakers: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel_frames_per_code = cfg.mel_frames_per_code
        self.null_code = codec_vocab_size  # stands in for every code when conditioning is dropped
        self.code_embed = nn.Embedding(codec_vocab_size + 1, cfg.dim)
        self.in_proj = nn.Linear(n_mels + cfg.dim, cfg.dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(cfg.dim, cfg.heads, cfg.ffn_dim) for _ in range(cfg.layers)
        )
        self.final_modulation = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.out = nn.Linear(cfg.dim, n_mels)
        for layer in (self.final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, t: Tensor, codes: Tensor, code_mask: Tensor, drop_cond: Tensor,
                cond: SpeechCondition | None = None, offset: int = 0) -> Tensor:
        k = self.mel_frames_per_code
        if x.shape[1] != codes.shape[1] * k:
            raise ValueError(f"mel has {x.shape[1]} frames; {codes.shape[1]} codes need {codes.shape[1] * k}")
        dtype = param_dtype(self)  # bf16 under DeepSpeed/FSDP bf16 weights; no-op otherwise
        codes = torch.where(drop_cond[:, None], torch.full_like(codes, self.null_code), codes)
        cond = self.code_embed(codes).repeat_interleave(k, dim=1)
        frames = offset + torch.arange(x.shape[1], device=x.device)
        h = self.in_proj(torch.cat([x.to(dtype), cond], -1)) + sinusoidal_embedding(frames, self.cfg.dim).to(dtype)[None]
        temb = self.time_mlp(sinusoidal_embedding(t * 1000.0, self.cfg.dim).to(dtype))
        mask = segment_mask(code_mask.repeat_interleave(k, dim=1).long())
        for block in self.blocks:
            h = block(h, temb, mask)
        shift, scale = self.final_modulation(F.silu(temb))[:, None].chunk(2, -1)
        return self.out(F.layer_norm(h, h.shape[-1:]) * (1 + scale) + shift)
