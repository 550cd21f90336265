"""ECAPA-TDNN speaker encoder (Desplanques et al., 2020): a reference mel -> one vector.

Qwen2.5-Omni's token2wav DiT conditions every frame on this embedding of a reference
utterance's mel. Time-delay (dilated 1-D conv) blocks with reflect "same" padding,
SE-Res2Net blocks, multi-layer feature aggregation, attentive statistics pooling.
Submodule names follow the SpeechBrain/transformers layout so checkpoints map 1:1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TimeDelayBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding="same", padding_mode="reflect")

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x))


class Res2Block(nn.Module):
    """Channel groups processed hierarchically: group i sees group i-1's output."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(TimeDelayBlock(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        for i, part in enumerate(x.chunk(self.scale, dim=1)):
            if i == 0:
                y = part
            elif i == 1:
                y = self.blocks[0](part)
            else:
                y = self.blocks[i - 1](part + y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, bottleneck, 1)
        self.conv2 = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.relu(self.conv1(x.mean(dim=2, keepdim=True)))
        return x * torch.sigmoid(self.conv2(s))


class SERes2Block(nn.Module):
    def __init__(self, cin: int, cout: int, scale: int, se: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.tdnn1 = TimeDelayBlock(cin, cout, 1, 1)
        self.res2net_block = Res2Block(cout, scale, kernel, dilation)
        self.tdnn2 = TimeDelayBlock(cout, cout, 1, 1)
        self.se_block = SqueezeExcite(cout, se)

    def forward(self, x: Tensor) -> Tensor:
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + x


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time, with global context."""

    def __init__(self, channels: int, attention: int) -> None:
        super().__init__()
        self.tdnn = TimeDelayBlock(channels * 3, attention, 1, 1)
        self.conv = nn.Conv1d(attention, channels, 1)

    @staticmethod
    def _stats(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        mean = (w * x).sum(2)
        std = ((w * (x - mean[..., None]).pow(2)).sum(2).clamp_min(1e-12)).sqrt()
        return mean, std

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[-1]
        mean, std = self._stats(x, torch.full_like(x[:, :1], 1.0 / T))
        context = torch.cat([x, mean[..., None].expand(-1, -1, T), std[..., None].expand(-1, -1, T)], 1)
        weights = self.conv(torch.tanh(self.tdnn(context))).softmax(dim=2)
        mean, std = self._stats(x, weights)
        return torch.cat([mean, std], dim=1)[..., None]


class ECAPA(nn.Module):
    """(B, T, n_mels) -> (B, out_dim). Needs T > the largest reflect padding."""

    def __init__(self, n_mels: int, out_dim: int, channels: list[int], kernels: list[int],
                 dilations: list[int], attention: int, res2net_scale: int, se_channels: int) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(dilations) or len(channels) < 3:
            raise ValueError("ECAPA channels, kernel sizes and dilations need the same length (>= 3)")
        if sum(channels[1:-1]) != channels[-1]:
            raise ValueError(
                f"ECAPA channels {channels}: the last entry must be the sum of the middle ones "
                f"({sum(channels[1:-1])}), the width of the aggregated features"
            )
        self.blocks = nn.ModuleList([TimeDelayBlock(n_mels, channels[0], kernels[0], dilations[0])])
        for i in range(1, len(channels) - 1):
            self.blocks.append(SERes2Block(channels[i - 1], channels[i], res2net_scale, se_channels,
                                           kernels[i], dilations[i]))
        self.mfa = TimeDelayBlock(channels[-1], channels[-1], kernels[-1], dilations[-1])
        self.asp = AttentiveStatsPool(channels[-1], attention)
        self.fc = nn.Conv1d(channels[-1] * 2, out_dim, 1)
        self.min_frames = max((d * (k - 1) + 1) // 2 for k, d in zip(kernels, dilations)) + 1

    def forward(self, mel: Tensor) -> Tensor:
        x = mel.transpose(1, 2)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs[1:], dim=1))
        return self.fc(self.asp(x))[..., 0]
