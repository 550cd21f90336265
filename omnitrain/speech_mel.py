"""The mel representation of the spoken reply, shared by data, DiT and vocoder.

The data pipeline turns reply waveforms into these frames (the DiT's targets); a
vocoder turns them back into waveforms. One definition keeps the three in agreement.
Frames are log-mel, normalised to roughly zero mean and unit variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torchaudio
from torch import Tensor

from omnitrain.nn.buffers import constant_buffers


@dataclass
class SpeechConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320  # 20 ms: two mel frames per 40 ms codec token
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5
    norm_mean: float = -8.5  # of natural-log mel magnitudes; rough constants that keep
    norm_std: float = 3.5  # frames near zero mean, unit variance
    # voices the Talker and DiT know by name; a spoken reply names one ("speaker"), or
    # speaks with the first
    speakers: list[str] = field(default_factory=lambda: ["default"])
    max_reference_frames: int = 300  # a reference utterance is cut to this many frames

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


class SpeechMel(torch.nn.Module):
    """Waveform (T,) -> normalised log-mel (frames, n_mels), frames = T // hop + 1."""

    def __init__(self, cfg: SpeechConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = constant_buffers(torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            power=1.0,
            norm="slaney",
            mel_scale="slaney",
        ))

    def forward(self, wave: Tensor) -> Tensor:
        mel = self.mel(wave.float())  # (n_mels, frames)
        return self.normalize(torch.log(mel.clamp_min(self.cfg.log_floor))).transpose(-1, -2)

    def normalize(self, log_mel: Tensor) -> Tensor:
        return (log_mel - self.cfg.norm_mean) / self.cfg.norm_std

    def to_magnitude(self, mel: Tensor) -> Tensor:
        """Normalised frames (..., T, n_mels) -> mel magnitudes (..., n_mels, T)."""
        return torch.exp(mel * self.cfg.norm_std + self.cfg.norm_mean).transpose(-1, -2)

    @property
    def filterbank(self) -> Tensor:
        """(n_freqs, n_mels) mel filterbank used by ``forward``."""
        return self.mel.mel_scale.fb
