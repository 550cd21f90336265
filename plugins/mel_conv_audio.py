"""A small audio encoder over Whisper-style 128-bin log-mel, one token per 40 ms.

The baseline of the ``audio_encoder`` slot: conv stem (stride 2), sinusoidal
positions, a few transformer layers with full attention within each clip, average
pooling by 2, projection to the Thinker width. Token count per clip of L mel frames
is ``((L - 1) // 2 + 1 - 2) // 2 + 1``, as in Qwen2.5-Omni.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import (
    AudioEncoder,
    AudioFeatureExtractor,
    TransformerBlock,
    WhisperLogMel,
    audio_token_count,
    register,
    segment_mask,
    sinusoidal_embedding,
)


@dataclass
class MelConvAudioConfig:
    n_mels: int = 128
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256


@register("audio_encoder", "mel_conv", config=MelConvAudioConfig)
class MelConvAudioEncoder(AudioEncoder):
    """Conv stem + small transformer over log-mel; baseline audio encoder."""

    block_types = (TransformerBlock,)

    def __init__(self, cfg: MelConvAudioConfig, out_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.dim, cfg.dim, kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.ffn_dim) for _ in range(cfg.layers)
        )
        self.ln_post = nn.LayerNorm(cfg.dim)
        self.proj = nn.Linear(cfg.dim, out_dim)

    @classmethod
    def feature_extractor(cls, cfg: MelConvAudioConfig) -> AudioFeatureExtractor:
        return WhisperLogMel(cfg.n_mels)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        tokens = audio_token_count(lengths)  # per clip, on the host
        lengths = lengths.to(features.device, non_blocking=True)
        frames = torch.arange(features.shape[-1], device=features.device)
        x = F.gelu(self.conv1(features))
        x = x * (frames[None] < lengths[:, None])[:, None]  # padding must not leak into conv2
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (N, T', dim)
        conv_len = (lengths - 1) // 2 + 1
        steps = torch.arange(x.shape[1], device=x.device)
        x = x + sinusoidal_embedding(steps, self.cfg.dim).to(x.dtype)[None]
        valid = steps[None] < conv_len[:, None]
        mask = segment_mask(valid.long())
        for layer in self.layers:
            x = layer(x, mask)
        pooled = F.avg_pool1d(x.transpose(1, 2), kernel_size=2, stride=2).transpose(1, 2)
        # each clip's first ``tokens`` pooled frames, picked by positions found on the host
        # (a boolean mask on the GPU would read its count back)
        keep = (torch.arange(pooled.shape[1])[None] < tokens[:, None]).view(-1).nonzero()[:, 0]
        return self.proj(self.ln_post(pooled.flatten(0, 1)[keep.to(x.device, non_blocking=True)]))
