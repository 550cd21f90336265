"""A training-free speech codec: one token per 40 ms frame from pitch and loudness.

The baseline of the ``codec`` slot. Each frame becomes silence (token 0) or
``1 + pitch_semitone * levels + loudness_level``; decoding synthesises a sine at the
semitone with the level's loudness, so tokens can be listened to. Crude for real
speech (it hears a melody, not phonemes), exact for the demo's tonal "voice". A
pretrained neural codec takes this slot's place through the same contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from omnitrain.api import Codec, register


@dataclass
class PitchCodecConfig:
    sample_rate: int = 16000
    hop_length: int = 640  # 40 ms at 16 kHz: 25 tokens per second
    f_low: float = 150.0  # semitone 0
    semitones: int = 48
    levels: int = 2
    silence_rms: float = 0.01
    level_rms: list[float] | None = None  # rms of each level; None: log-spaced 0.03..0.2


@register("codec", "pitch", config=PitchCodecConfig)
class PitchCodec(Codec):
    """Per-frame pitch (semitone) + loudness tokens; sine resynthesis."""

    def __init__(self, cfg: PitchCodecConfig) -> None:
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.frame_rate = cfg.sample_rate / cfg.hop_length
        self.vocab_size = 1 + cfg.semitones * cfg.levels
        if cfg.level_rms is not None:
            if len(cfg.level_rms) != cfg.levels:
                raise ValueError(
                    f"codec.level_rms has {len(cfg.level_rms)} values but codec.levels={cfg.levels}"
                )
            self.level_rms = torch.tensor(cfg.level_rms)
        else:
            self.level_rms = torch.logspace(math.log10(0.03), math.log10(0.2), cfg.levels)

    def semitone_hz(self, semitone: Tensor | float) -> Tensor:
        return self.cfg.f_low * 2.0 ** (torch.as_tensor(semitone, dtype=torch.float32) / 12.0)

    def encode(self, wave: Tensor) -> Tensor:
        c = self.cfg
        wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        n = wave.numel() // c.hop_length
        if n == 0:
            return torch.zeros(0, dtype=torch.long)
        frames = wave[: n * c.hop_length].view(n, c.hop_length)
        rms = frames.pow(2).mean(-1).sqrt()
        n_fft = 8192
        spec = torch.fft.rfft(frames * torch.hann_window(c.hop_length), n=n_fft).abs()
        peak_hz = spec.argmax(-1).float() * c.sample_rate / n_fft
        semitone = torch.round(12 * torch.log2(peak_hz.clamp_min(1.0) / c.f_low))
        semitone = semitone.clamp(0, c.semitones - 1).long()
        # nearest level on a log scale
        level = (rms.clamp_min(1e-6).log()[:, None] - self.level_rms.log()[None]).abs().argmin(-1)
        tokens = 1 + semitone * c.levels + level
        return torch.where(rms < c.silence_rms, torch.zeros_like(tokens), tokens)

    def decode(self, tokens: Tensor) -> Tensor:
        c = self.cfg
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1).clamp(0, self.vocab_size - 1)
        voiced = tokens > 0
        semitone = (tokens - 1).clamp_min(0) // c.levels
        level = (tokens - 1).clamp_min(0) % c.levels
        return self.synthesize(semitone, level, voiced)

    def synthesize(self, semitone: Tensor, level: Tensor, voiced: Tensor) -> Tensor:
        """A sine per frame at its (fractional) semitone and loudness level, silence where not voiced."""
        c = self.cfg
        hz = torch.where(voiced, self.semitone_hz(semitone), torch.zeros(()))
        amp = torch.where(voiced, self.level_rms[level] * math.sqrt(2), torch.zeros(()))
        # per-sample tracks; loudness smoothed over 5 ms so frame edges do not click
        hz_track = hz.repeat_interleave(c.hop_length)
        amp_track = amp.repeat_interleave(c.hop_length)
        k = max(1, c.sample_rate // 200)
        kernel = torch.ones(1, 1, k) / k
        smooth = F.conv1d(amp_track[None, None], kernel, padding=k // 2)[0, 0, : hz_track.numel()]
        amp_track = smooth * (amp_track > 0)  # fades stay inside voiced frames
        phase = torch.cumsum(2 * math.pi * hz_track / c.sample_rate, dim=0)
        return amp_track * torch.sin(phase)
