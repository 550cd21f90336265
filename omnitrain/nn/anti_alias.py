"""Anti-aliased periodic activation (BigVGAN): upsample x2, SnakeBeta, downsample x2.

A Kaiser-windowed sinc low-pass filter (cutoff 0.25, half-width 0.3, 12 taps) keeps the
harmonics Snake creates from aliasing. Filters are derived constants, not weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kaiser_sinc_filter(cutoff: float = 0.25, half_width: float = 0.3, taps: int = 12) -> Tensor:
    """(taps,) low-pass filter summing to 1 (Kaiser window design for the attenuation)."""
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, beta=beta, periodic=False)
    t = torch.arange(-half, half) + 0.5 if taps % 2 == 0 else torch.arange(taps) - half
    filt = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return filt / filt.sum()


class SnakeBeta(nn.Module):
    """x + 1/beta sin^2(alpha x), per channel, alpha and beta on a log scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + 1.0 / (beta + 1e-9) * torch.sin(x * alpha).pow(2)


class AntiAliasedSnake(nn.Module):
    """(B, C, T) -> (B, C, T): SnakeBeta at twice the rate, band-limited both ways."""

    taps = 12

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.register_buffer("filter", kaiser_sinc_filter(taps=self.taps), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        C, k = x.shape[1], self.taps
        filt = self.filter.to(x).expand(C, 1, k)
        pad = k // 2 - 1
        up = F.conv_transpose1d(F.pad(x, (pad, pad), mode="replicate"), filt, stride=2, groups=C)
        crop = pad * 2 + (k - 2) // 2
        x = 2 * up[..., crop:-crop]
        x = self.act(x)
        x = F.pad(x, (k // 2 - 1, k // 2), mode="replicate")
        return F.conv1d(x, filt, stride=2, groups=C)
