"""Griffin-Lim vocoder: mel -> waveform with no training (torchaudio).

The zero-training default of the ``vocoder`` slot. Inverts the mel filterbank by
least squares, then estimates phase iteratively, always in fp32 (FFTs refuse bf16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor

from omnitrain.api import SpeechMel, Vocoder, register


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
        self._pinv: dict[torch.device, Tensor] = {}  # derived constants, fp32, per device

    def _inverse_filterbank(self, device: torch.device) -> Tensor:
        if device not in self._pinv:
            self._pinv[device] = torch.linalg.pinv(self.mel.filterbank.T).to(device)
        return self._pinv[device]

    @torch.no_grad()
    def forward(self, mel: Tensor) -> Tensor:
        with torch.autocast(mel.device.type, enabled=False):  # FFTs refuse bf16
            magnitude = self.mel.to_magnitude(mel.float())  # (B, n_mels, T)
            linear = (self._inverse_filterbank(mel.device) @ magnitude).clamp_min(0.0)  # (B, n_freqs, T)
            s = self.mel.cfg
            window, _ = self.mel.constants(mel.device)
            return torchaudio.functional.griffinlim(
                linear, window, s.n_fft, s.hop_length, s.n_fft, power=1.0, n_iter=self.cfg.n_iter,
                momentum=self.cfg.momentum, length=None, rand_init=True,
            )
