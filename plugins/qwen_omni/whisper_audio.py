"""Qwen2.5-Omni's audio encoder (Whisper-style), faithful to transformers'
``Qwen2_5OmniAudioEncoder``.

128-bin log-mel -> per 2 s chunk (``2 * n_window`` frames): conv (k3) -> GELU -> conv
(k3, stride 2) -> GELU, sinusoidal positions restarting in every chunk; pre-norm
transformer layers attending only within their chunk; average pooling of frame pairs
per clip (one token per 40 ms); LayerNorm; projection to the Thinker width. Sizes run
from tiny to the 32-layer, 1280-wide shape of Qwen2.5-Omni-7B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import (
    AudioEncoder,
    AudioFeatureExtractor,
    WhisperLogMel,
    audio_token_count,
    register,
)
from omnitrain.nn.segments import SegmentPlan, segment_attention


@dataclass
class WhisperAudioConfig:
    n_mels: int = 128
    d_model: int = 256  # Qwen2.5-Omni-7B: 1280
    layers: int = 4  # 32
    heads: int = 4  # 20
    ffn_dim: int = 1024  # 5120
    n_window: int = 100  # chunks of 2 * n_window mel frames (2 s); must be even
    max_source_positions: int = 1500


def sinusoids(length: int, channels: int) -> Tensor:
    """Whisper's [sin | cos] position table."""
    increment = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2).float())
    scaled = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class EncoderLayer(nn.Module):
    """Pre-norm Whisper layer: LayerNorm, attention (no k bias), LayerNorm, GELU MLP."""

    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)

    def forward(self, x: Tensor, plan: SegmentPlan) -> Tensor:
        N, d = x.shape
        h = self.self_attn_layer_norm(x)
        q, k, v = (p(h).view(N, self.heads, d // self.heads) for p in (self.q_proj, self.k_proj, self.v_proj))
        x = x + self.out_proj(segment_attention(q, k, v, plan).reshape(N, d))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


@register("audio_encoder", "whisper_audio", config=WhisperAudioConfig)
class WhisperAudioEncoder(AudioEncoder):
    """Qwen2.5-Omni audio tower: chunked conv stem, block-wise attention, pooled to 40 ms."""

    block_types = (EncoderLayer,)

    def __init__(self, cfg: WhisperAudioConfig, out_dim: int) -> None:
        super().__init__()
        if cfg.n_window % 2 or cfg.d_model % cfg.heads:
            raise ValueError("audio_encoder.n_window must be even and d_model divisible by heads")
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(EncoderLayer(cfg.d_model, cfg.heads, cfg.ffn_dim) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, out_dim)
        self.register_buffer("positions", sinusoids(cfg.max_source_positions, cfg.d_model), persistent=False)

    @classmethod
    def feature_extractor(cls, cfg: WhisperAudioConfig) -> AudioFeatureExtractor:
        return WhisperLogMel(cfg.n_mels)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        chunk = 2 * self.cfg.n_window
        lengths = lengths.tolist()
        # cut every clip into 2 s chunks (the last one shorter); chunks never span clips
        pieces, sizes = [], []
        for i, n in enumerate(lengths):
            for start in range(0, n, chunk):
                pieces.append(features[i, :, start : min(start + chunk, n)])
                sizes.append(min(chunk, n - start))
        size = torch.tensor(sizes, device=features.device)
        padded = torch.stack([F.pad(p, (0, chunk - p.shape[-1])) for p in pieces])  # (C, mels, chunk)
        frames = torch.arange(chunk, device=features.device)
        h = F.gelu(self.conv1(padded)) * (frames[None] < size[:, None])[:, None]
        h = F.gelu(self.conv2(h)).transpose(1, 2)  # (C, chunk / 2, d)
        h = h + self.positions[: h.shape[1]].to(h)  # device too: made on the CPU under zero.Init
        after = (size - 1) // 2 + 1
        valid = torch.arange(h.shape[1], device=h.device)[None] < after[:, None]
        x = h[valid]  # chunk-major: clip order preserved
        after_host = (torch.tensor(sizes, dtype=torch.long) - 1) // 2 + 1  # as `after`, on the host
        plan = SegmentPlan.build(torch.arange(len(sizes)).repeat_interleave(after_host), h.device)
        for layer in self.layers:
            x = layer(x, plan)
        # average frame pairs within each clip (an odd last frame is dropped)
        out, start = [], 0
        for n in lengths:
            m = (n - 1) // 2 + 1
            k = audio_token_count(n)
            clip = x[start : start + 2 * k].view(k, 2, -1).mean(1)
            out.append(clip)
            start += m
        return self.proj(self.ln_post(torch.cat(out)))


def hf_audio_state_dict(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map transformers' ``Qwen2_5OmniAudioEncoder`` weights to this plugin's names."""
    out = {}
    for key, value in hf.items():
        if key.startswith("audio_bos_eos_token") or "positional_embedding" in key:
            continue  # unused by any forward / recomputed
        out[key.replace("self_attn.", "")] = value
    return out
