"""BigVGAN-style vocoder (as in Qwen2.5-Omni's token2wav): trainable, adversarially.

conv_pre -> [transposed-conv upsample -> mean of AMP blocks] per stage -> anti-aliased
Snake -> conv_post -> tanh. An AMP block is residual pairs of dilated convs behind
anti-aliased SnakeBeta activations. The upsampling rates multiply to the mel hop, so T
frames give exactly T * hop samples. Trained in its own stage (``task=vocoder``) against
multi-period and multi-resolution discriminators (``build_discriminator``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from omnitrain.api import SpeechConfig, SpeechMel, TrainableVocoder, register
from omnitrain.nn.anti_alias import AntiAliasedSnake
from omnitrain_plugins.qwen_omni.discriminators import CombinedDiscriminator


@dataclass
class BigVGANConfig:
    channels: int = 128  # after conv_pre (Qwen2.5-Omni: 1536); halved at every upsampling
    upsample_rates: list[int] = field(default_factory=lambda: [5, 4, 4, 4])  # product = hop (320)
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [11, 8, 8, 8])
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    context_frames: int = 8  # mel context each side when synthesising chunk by chunk
    # discriminators (training only, not in the bundle)
    mpd_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    mrd_resolutions: list[list[int]] = field(  # n_fft, hop, window
        default_factory=lambda: [[512, 128, 512], [1024, 256, 1024], [256, 64, 256]])
    disc_channels: int = 16
    # what the frames are and how the wave leaves: "normalized" frames (SpeechMel) and tanh
    # train from scratch; Qwen2.5-Omni's released BigVGAN reads natural-log mel magnitudes
    # (speech.norm_mean=0, norm_std=1), rescales them to dB in [-1, 1] itself, and clamps
    input: str = "normalized"  # normalized | qwen_log_mel
    output: str = "tanh"  # tanh | clamp

    def __post_init__(self) -> None:
        if self.input not in ("normalized", "qwen_log_mel"):
            raise ValueError(f"vocoder.input={self.input!r}: use normalized or qwen_log_mel")
        if self.output not in ("tanh", "clamp"):
            raise ValueError(f"vocoder.output={self.output!r}: use tanh or clamp")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("vocoder.upsample_rates and vocoder.upsample_kernel_sizes need the same length")
        for r, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if (k - r) % 2 or k < r:
                raise ValueError(f"vocoder upsampling kernel {k} for rate {r}: kernel - rate must be "
                                 "even and >= 0 so each frame gives exactly `rate` samples")
        if self.channels >> len(self.upsample_rates) < 1:
            raise ValueError(f"vocoder.channels={self.channels} is too small to halve "
                             f"{len(self.upsample_rates)} times")


class AMPBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)
                                    for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedSnake(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: Tensor) -> Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            y = c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x))))
            x = x + y
        return x


@register("vocoder", "bigvgan", config=BigVGANConfig)
class BigVGAN(TrainableVocoder):
    """BigVGAN generator (anti-aliased Snake, AMP blocks); trained with GAN losses."""

    block_types = (AMPBlock,)

    def __init__(self, cfg: BigVGANConfig, mel: SpeechMel) -> None:
        super().__init__()
        self.cfg = cfg
        hop = mel.cfg.hop_length
        if math.prod(cfg.upsample_rates) != hop:
            raise ValueError(f"vocoder.upsample_rates={cfg.upsample_rates} multiply to "
                             f"{math.prod(cfg.upsample_rates)}, but speech.hop_length={hop}")
        self.context_frames = cfg.context_frames
        self.sample_rate = mel.cfg.sample_rate
        self.conv_pre = nn.Conv1d(mel.cfg.n_mels, cfg.channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = cfg.channels
        for r, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            self.ups.append(nn.ConvTranspose1d(ch, ch // 2, k, stride=r, padding=(k - r) // 2))
            ch //= 2
            for kernel, dil in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations):
                self.resblocks.append(AMPBlock(ch, kernel, dil))
        self.activation_post = AntiAliasedSnake(ch)
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3, bias=False)
        self._speech = mel.cfg

    @staticmethod
    def check_config(cfg: BigVGANConfig, speech: SpeechConfig) -> list[str]:
        if math.prod(cfg.upsample_rates) != speech.hop_length:
            return [f"vocoder.upsample_rates={list(cfg.upsample_rates)} multiply to "
                    f"{math.prod(cfg.upsample_rates)}, but speech.hop_length={speech.hop_length}: "
                    "each mel frame must become exactly one hop of samples"]
        return []

    @staticmethod
    def qwen_db(log_mel: Tensor) -> Tensor:
        """Qwen's input scaling: natural-log magnitudes -> dB - 20, floored at -115 dB and
        mapped linearly onto [-1, 1] (transformers' ``process_mel_spectrogram``)."""
        floor = math.exp(-115 / 20.0 * math.log(10))
        db = 20 * torch.log10(log_mel.exp().clamp_min(floor)) - 20
        return (2 * (db + 115) / 115 - 1).clamp(-1, 1)

    def forward(self, mel: Tensor) -> Tensor:
        if self.cfg.input == "qwen_log_mel":
            mel = self.qwen_db(mel)
        x = self.conv_pre(mel.transpose(1, 2))
        n = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(x)
            x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n
        x = self.conv_post(self.activation_post(x))
        x = torch.tanh(x) if self.cfg.output == "tanh" else x.clamp(-1, 1)
        return x[:, 0]

    def build_discriminator(self) -> nn.Module:
        c = self.cfg
        return CombinedDiscriminator(c.mpd_periods, c.mrd_resolutions, c.disc_channels)
