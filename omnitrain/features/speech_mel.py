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

from omnitrain.ranges import bounded, one_of


@dataclass(frozen=True)
class SpeechConfig:
    sample_rate: int = bounded(16000, ge=1)
    n_fft: int = bounded(1024, ge=2)
    hop_length: int = bounded(320, ge=1)  # 20 ms: two mel frames per 40 ms codec token
    n_mels: int = bounded(80, ge=1)
    f_min: float = bounded(0.0, ge=0)
    f_max: float = bounded(8000.0, gt=0)
    log_floor: float = bounded(1e-5, gt=0)
    norm_mean: float = -8.5  # of natural-log mel magnitudes; rough constants that keep
    norm_std: float = bounded(3.5, gt=0)  # frames near zero mean, unit variance
    # voices the Talker and DiT know by name; a spoken reply names one ("speaker"), or
    # speaks with the first
    speakers: list[str] = field(default_factory=lambda: ["default"])
    max_reference_frames: int = bounded(300, ge=1)  # a reference utterance is cut to this many frames
    # how frames sit on the wave: "center" (torchaudio's center=True, T // hop + 1 frames) or
    # "bigvgan" (BigVGAN's recipe, Qwen2.5-Omni's token2wav: (n_fft - hop) / 2 reflected samples
    # each side, |X| = sqrt(re^2 + im^2 + 1e-9), T // hop frames)
    padding: str = one_of("center", "center", "bigvgan")

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


class SpeechMel:
    """Waveform (..., T) -> normalised log-mel (..., frames, n_mels), frames = T // hop + 1
    (``padding=bigvgan``: T // hop).

    Not a module and holding no buffers: its window and filterbank are derived constants,
    made in fp32 on the device of the waveform when first needed (cached per device). So
    a model that owns one builds the same under any construction context (the meta
    device, a bf16 default dtype, DeepSpeed's ``zero.Init``) and keeps fp32 constants
    when the model is cast to bf16. Differentiable (the vocoder stage's mel loss).
    """

    def __init__(self, cfg: SpeechConfig) -> None:
        self.cfg = cfg
        self._constants: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def constants(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """(window (n_fft,), filterbank (n_freqs, n_mels)) in fp32 on ``device``."""
        device = torch.device(device)
        if device not in self._constants:
            c = self.cfg
            window = torch.hann_window(c.n_fft, dtype=torch.float32, device=device)
            fb = torchaudio.functional.melscale_fbanks(
                c.n_fft // 2 + 1, c.f_min, c.f_max, c.n_mels, c.sample_rate, norm="slaney", mel_scale="slaney"
            ).to(device=device, dtype=torch.float32)
            self._constants[device] = (window, fb)
        return self._constants[device]

    def magnitude(self, wave: Tensor) -> Tensor:
        """Mel magnitudes (..., n_mels, frames): torchaudio's MelSpectrogram, power 1."""
        window, fb = self.constants(wave.device)
        c = self.cfg
        with torch.autocast(wave.device.type, enabled=False):  # fp32 even inside a bf16 step
            if c.padding == "bigvgan":
                pad = (c.n_fft - c.hop_length) // 2
                flat = wave.float().reshape(-1, 1, wave.shape[-1])
                flat = torch.nn.functional.pad(flat, (pad, pad), mode="reflect")[:, 0]
                spec = torchaudio.functional.spectrogram(
                    flat, pad=0, window=window, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.n_fft,
                    power=None, normalized=False, center=False, onesided=True,
                )
                spec = (spec.real.pow(2) + spec.imag.pow(2) + 1e-9).sqrt()
                spec = spec.reshape(*wave.shape[:-1], *spec.shape[-2:])
                return torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)
            spec = torchaudio.functional.spectrogram(
                wave.float(), pad=0, window=window, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.n_fft,
                power=1.0, normalized=False, center=True, pad_mode="reflect", onesided=True,
            )
            return torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)

    def __call__(self, wave: Tensor) -> Tensor:
        mel = self.magnitude(wave)
        return self.normalize(torch.log(mel.clamp_min(self.cfg.log_floor))).transpose(-1, -2)

    def normalize(self, log_mel: Tensor) -> Tensor:
        return (log_mel - self.cfg.norm_mean) / self.cfg.norm_std

    def to_magnitude(self, mel: Tensor) -> Tensor:
        """Normalised frames (..., T, n_mels) -> mel magnitudes (..., n_mels, T)."""
        return torch.exp(mel * self.cfg.norm_std + self.cfg.norm_mean).transpose(-1, -2)

    @property
    def filterbank(self) -> Tensor:
        """(n_freqs, n_mels) mel filterbank used by ``forward`` (fp32, CPU)."""
        return self.constants("cpu")[1]
