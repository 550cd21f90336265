"""Whisper/Qwen2.5-Omni log-mel features, exactly as transformers' processor makes them.

128 mel bins (slaney), 25 ms window, 10 ms hop, log10 with an 8-decade floor, scaled
(x + 4) / 4. The waveform is zero-padded before the STFT so a clip of N samples gives
ceil(N / 160) frames, like the processor's padding to 300 s (max diff 1.5e-5).
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor

from omnitrain.nn.buffers import constant_buffers
from omnitrain.slots import AudioFeatureExtractor

HOP = 160
N_FFT = 400


def audio_token_count(frames: int) -> int:
    """Qwen2.5-Omni audio tokens for ``frames`` mel frames: conv stride 2, then pool 2."""
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


class WhisperLogMel(AudioFeatureExtractor):
    sample_rate = 16000

    def __init__(self, n_mels: int = 128) -> None:
        self.n_mels = n_mels
        self._mel = None  # built lazily so the object pickles small

    def _transform(self) -> torchaudio.transforms.MelSpectrogram:
        if self._mel is None:
            self._mel = constant_buffers(torchaudio.transforms.MelSpectrogram(
                sample_rate=16000, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, f_min=0.0,
                f_max=8000.0, n_mels=self.n_mels, power=2.0, center=True, pad_mode="reflect",
                norm="slaney", mel_scale="slaney",
            ))
        return self._mel

    def __call__(self, wave: Tensor) -> Tensor:
        wave = wave.float().reshape(-1)
        frames = -(-wave.numel() // HOP)
        padded = torch.zeros(frames * HOP + N_FFT)
        padded[: wave.numel()] = wave
        log_spec = self._transform()(padded).clamp_min(1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0)[:, :frames]

    def num_tokens(self, frames: int) -> int:
        return audio_token_count(frames)

    def __getstate__(self) -> dict:
        return {"n_mels": self.n_mels, "_mel": None}
