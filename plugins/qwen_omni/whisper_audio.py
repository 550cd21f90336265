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
        chunk, device = 2 * self.cfg.n_window, features.device
        plan = ChunkPlan.build(lengths, chunk, features.shape[-1])
        # every clip cut into 2 s chunks (the last one shorter, zero-padded); chunks never
        # span clips. Gathered by indices made on the host: no per-clip loop, no GPU read
        clip, frame = plan.clip.to(device, non_blocking=True), plan.frame.to(device, non_blocking=True)
        real = plan.real.to(device, features.dtype, non_blocking=True)
        padded = features[clip[:, None], :, frame].transpose(1, 2) * real[:, None]  # (C, mels, chunk)
        h = F.gelu(self.conv1(padded)) * real[:, None]
        h = F.gelu(self.conv2(h)).transpose(1, 2)  # (C, chunk / 2, d)
        h = h + self.positions[: h.shape[1]].to(h)  # device too: made on the CPU under zero.Init
        x = h.flatten(0, 1)[plan.kept.to(device, non_blocking=True)]  # chunk-major: clip order kept
        segments = SegmentPlan.build(torch.arange(len(plan.after)).repeat_interleave(plan.after), device)
        for layer in self.layers:
            x = layer(x, segments)
        # average frame pairs within each clip (an odd last frame is dropped)
        pooled = x[plan.pairs.to(device, non_blocking=True)].mean(1)
        return self.proj(self.ln_post(pooled))


@dataclass
class ChunkPlan:
    """Where each 2 s chunk's frames come from and which outputs are kept, found on the host
    from the clip lengths (a CPU tensor), so the forward only gathers."""

    clip: Tensor  # (C,) the clip of each chunk
    frame: Tensor  # (C, chunk) source frame of each chunk position (clamped where padding)
    real: Tensor  # (C, chunk) float: 1 at real frames, 0 at padding
    after: Tensor  # (C,) frames each chunk has after the stride-2 conv
    kept: Tensor  # flat (C * chunk/2) positions of those frames, chunk-major
    pairs: Tensor  # (tokens, 2) the frame pair each output token averages

    @classmethod
    def build(cls, lengths: Tensor, chunk: int, frames: int) -> ChunkPlan:
        lengths = lengths.cpu().long()
        per_clip = (lengths + chunk - 1) // chunk
        clip = torch.arange(len(lengths)).repeat_interleave(per_clip)
        first_chunk = per_clip.cumsum(0) - per_clip
        start = (torch.arange(len(clip)) - first_chunk[clip]) * chunk
        size = (lengths[clip] - start).clamp(max=chunk)
        offset = torch.arange(chunk)
        frame = (start[:, None] + offset).clamp(max=frames - 1)
        real = (offset < size[:, None]).float()
        after = (size - 1) // 2 + 1
        kept = (torch.arange((chunk - 1) // 2 + 1) < after[:, None]).view(-1).nonzero()[:, 0]
        conv = (lengths - 1) // 2 + 1  # frames per clip after the conv, all its chunks
        tokens = audio_token_count(lengths)
        owner = torch.arange(len(lengths)).repeat_interleave(tokens)
        j = torch.arange(int(tokens.sum())) - (tokens.cumsum(0) - tokens)[owner]
        first = (conv.cumsum(0) - conv)[owner] + 2 * j
        return cls(clip, frame, real, after, kept, torch.stack([first, first + 1], 1))


def hf_audio_state_dict(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map transformers' ``Qwen2_5OmniAudioEncoder`` weights to this plugin's names."""
    out = {}
    for key, value in hf.items():
        if key.startswith("audio_bos_eos_token") or "positional_embedding" in key:
            continue  # unused by any forward / recomputed
        out[key.replace("self_attn.", "")] = value
    return out
