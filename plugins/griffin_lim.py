"""Griffin-Lim vocoder: mel -> waveform with no training (torchaudio).

The zero-training default of the ``vocoder`` slot. Inverts the mel filterbank by
least squares, then estimates phase iteratively.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor

from omnitrain.nn.buffers import constant_buffers
from omnitrain.registry import register
from omnitrain.slots import Vocoder
from omnitrain.speech_mel import SpeechMel


@dataclass
class GriffinLimConfig:
    n_iter: int = 32
    momentum: float = 0.99


@register("vocoder", "griffin_lim", config=GriffinLimConfig)
class GriffinLimVocoder(Vocoder):
    """Pseudo-inverse mel filterbank + Griffin-Lim phase reconstruction."""

    def __init__(self, cfg: GriffinLimConfig, mel: SpeechMel) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = mel
        s = mel.cfg
        self.griffin_lim = constant_buffers(torchaudio.transforms.GriffinLim(
            n_fft=s.n_fft, hop_length=s.hop_length, power=1.0, n_iter=cfg.n_iter, momentum=cfg.momentum
        ))
        self.register_buffer("fb_pinv", torch.linalg.pinv(mel.filterbank.T), persistent=False)

    @torch.no_grad()
    def forward(self, mel: Tensor) -> Tensor:
        magnitude = self.mel.to_magnitude(mel.float())  # (B, n_mels, T)
        linear = (self.fb_pinv.to(magnitude) @ magnitude).clamp_min(0.0)  # (B, n_freqs, T)
        return self.griffin_lim(linear)
