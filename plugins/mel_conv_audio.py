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
import torchaudio
from torch import Tensor, nn

from omnitrain.nn import TransformerBlock, segment_mask, sinusoidal_embedding
from omnitrain.registry import register
from omnitrain.slots import AudioEncoder, AudioFeatureExtractor


@dataclass
class MelConvAudioConfig:
    n_mels: int = 128
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256


def audio_token_count(frames: int) -> int:
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


class WhisperLogMel(AudioFeatureExtractor):
    """Whisper's log-mel (16 kHz, 25 ms window, 10 ms hop, log10, 8-decade range, (x+4)/4).

    Frames = samples // 160 (Whisper drops the last STFT frame).
    """

    sample_rate = 16000

    def __init__(self, n_mels: int = 128) -> None:
        self.n_mels = n_mels
        self._mel = None  # built lazily so the object pickles small

    def _transform(self) -> torchaudio.transforms.MelSpectrogram:
        if self._mel is None:
            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=16000, n_fft=400, hop_length=160, n_mels=self.n_mels,
                power=2.0, norm="slaney", mel_scale="slaney",
            )
        return self._mel

    def __call__(self, wave: Tensor) -> Tensor:
        mel = self._transform()(wave.float())[:, :-1]
        log_spec = mel.clamp_min(1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0

    def num_tokens(self, frames: int) -> int:
        return audio_token_count(frames)

    def __getstate__(self) -> dict:
        return {"n_mels": self.n_mels, "_mel": None}


@register("audio_encoder", "mel_conv", config=MelConvAudioConfig)
class MelConvAudioEncoder(AudioEncoder):
    """Conv stem + small transformer over log-mel; baseline audio encoder."""

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
        out_len = torch.tensor([audio_token_count(int(n)) for n in lengths], device=x.device)
        keep = torch.arange(pooled.shape[1], device=x.device)[None] < out_len[:, None]
        return self.proj(self.ln_post(pooled[keep]))
