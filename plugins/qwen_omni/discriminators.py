"""Discriminators for training waveform vocoders (HiFi-GAN's multi-period, UnivNet /
BigVGAN's multi-resolution spectrogram). Training-only: never in a bundle.

Each sub-discriminator returns a score map and its intermediate feature maps (for the
feature-matching loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def _score_and_features(convs: nn.ModuleList, post: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Leaky-ReLU conv stack then a 1-channel head: flat score and every feature map."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    """Sees the waveform folded into rows of ``period`` samples (2-D convs along time)."""

    def __init__(self, period: int, channels: int) -> None:
        super().__init__()
        self.period = period
        widths = [1, channels, channels * 2, channels * 4, channels * 4]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), (3 if i < 3 else 1, 1), padding=(2, 0)))
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        B, T = wave.shape
        x = F.pad(wave, (0, (-T) % self.period), mode="reflect") if T % self.period else wave
        x = x.view(B, 1, -1, self.period)
        return _score_and_features(self.convs, self.post, x)


class SpectrogramDiscriminator(nn.Module):
    """Sees the linear magnitude spectrogram at one STFT resolution."""

    def __init__(self, n_fft: int, hop: int, win: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = torch.stft(wave.float(), self.n_fft, self.hop, self.win, self.window, return_complex=True)
        x = spec.abs()[:, None].transpose(2, 3)  # (B, 1, frames, freqs)
        return _score_and_features(self.convs, self.post, x)


class CombinedDiscriminator(nn.Module):
    def __init__(self, periods: list[int], resolutions: list[list[int]], channels: int) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(p, channels) for p in periods]
            + [SpectrogramDiscriminator(*r, channels) for r in resolutions]
        )

    def forward(self, wave: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(wave)
            scores.append(s)
            feats.append(f)
        return scores, feats
