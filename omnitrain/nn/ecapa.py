"""ECAPA-TDNN speaker encoder (Desplanques et al., 2020): a reference mel -> one vector.

Qwen2.5-Omni's token2wav DiT conditions every frame on this embedding of a reference
utterance's mel. Time-delay (dilated 1-D conv) blocks with reflect "same" padding,
SE-Res2Net blocks, multi-layer feature aggregation, attentive statistics pooling.
Submodule names follow the SpeechBrain/transformers layout so checkpoints map 1:1.

A batch of references of different lengths runs in one call (``lengths``): each item is
reflect-padded at its own end and the means and pooling see only its own frames, so the
result is what each item alone would give, without a per-length loop or a host read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def reflect_index(lengths: Tensor, frames: int, left: int, right: int) -> Tensor:
    """(B, left + frames + right) source frame of each position of a reflect-padded item
    that ends at its own length (positions past it are don't-cares, kept in range)."""
    pos = torch.arange(-left, frames + right, device=lengths.device).abs()[None]
    last = (lengths - 1)[:, None]
    return torch.where(pos > last, 2 * last - pos, pos).clamp(0, frames - 1)


def frame_mask(lengths: Tensor, x: Tensor) -> Tensor:
    """(B, 1, T) x's dtype: 1 at each item's own frames."""
    return (torch.arange(x.shape[-1], device=x.device)[None] < lengths[:, None])[:, None].to(x.dtype)


class TimeDelayBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding="same", padding_mode="reflect")

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        conv = self.conv
        if lengths is None or conv.kernel_size[0] == 1:
            return torch.relu(conv(x))
        total = conv.dilation[0] * (conv.kernel_size[0] - 1)  # "same": left = total // 2
        src = reflect_index(lengths, x.shape[-1], total // 2, total - total // 2)
        padded = x.gather(2, src[:, None].expand(-1, x.shape[1], -1))
        return torch.relu(F.conv1d(padded, conv.weight, conv.bias, dilation=conv.dilation))


class Res2Block(nn.Module):
    """Channel groups processed hierarchically: group i sees group i-1's output."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(TimeDelayBlock(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        outs: list[Tensor] = []
        for i, part in enumerate(x.chunk(self.scale, dim=1)):
            if i == 0:
                y = part
            elif i == 1:
                y = self.blocks[0](part, lengths)
            else:
                y = self.blocks[i - 1](part + y, lengths)
            outs.append(y)
        return torch.cat(outs, dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, bottleneck, 1)
        self.conv2 = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            mean = x.mean(dim=2, keepdim=True)
        else:
            acc = torch.promote_types(x.dtype, torch.float32)  # counts > 256 are not exact in bf16
            total = (x * frame_mask(lengths, x)).sum(2, keepdim=True, dtype=acc)
            mean = (total / lengths[:, None, None].to(acc)).to(x.dtype)
        s = torch.relu(self.conv1(mean))
        return x * torch.sigmoid(self.conv2(s))


class SERes2Block(nn.Module):
    def __init__(self, cin: int, cout: int, scale: int, se: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.tdnn1 = TimeDelayBlock(cin, cout, 1, 1)
        self.res2net_block = Res2Block(cout, scale, kernel, dilation)
        self.tdnn2 = TimeDelayBlock(cout, cout, 1, 1)
        self.se_block = SqueezeExcite(cout, se)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x), lengths)), lengths) + x


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

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        T = x.shape[-1]
        if lengths is None:
            mask, uniform = None, torch.full_like(x[:, :1], 1.0 / T)
        else:  # 1 / n computed at >= fp32, as 1.0 / T is
            mask = frame_mask(lengths, x)
            inverse = 1.0 / lengths.to(torch.promote_types(x.dtype, torch.float32))
            uniform = (mask * inverse[:, None, None]).to(x.dtype)
        mean, std = self._stats(x, uniform)
        context = torch.cat([x, mean[..., None].expand(-1, -1, T), std[..., None].expand(-1, -1, T)], 1)
        scores = self.conv(torch.tanh(self.tdnn(context)))
        if mask is not None:  # frames past an item's end get no weight
            scores = scores.masked_fill(mask == 0, float("-inf"))
        weights = scores.softmax(dim=2)
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

    def forward(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``lengths`` (B,), on mel's device, each >= ``min_frames``: item i is its first
        lengths[i] frames; None: every item is all of T."""
        x = mel.transpose(1, 2)
        outs = []
        for block in self.blocks:
            x = block(x, lengths)
            outs.append(x)
        x = self.mfa(torch.cat(outs[1:], dim=1), lengths)
        return self.fc(self.asp(x, lengths))[..., 0]
