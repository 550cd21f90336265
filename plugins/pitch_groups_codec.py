"""``codec=pitch_groups``: the pitch codec with residual code groups, a baseline for Talkers
that speak frames of several codes (Qwen3-Omni's 16, Mimi's 8) on the demo's data.

Group 0 is the pitch codec's token (semitone and loudness, 0 for silence); each further
group quantises what the groups before it left of the frame's pitch: group 1 the residual in
quarter semitones, group 2 in sixteenths, and so on (``4 ** g`` steps a semitone, 4 codes a
group, offset so a residual of 0 is code 2). Decoding adds the residuals back to the
semitone. On the demo's tones, which sit on semitones, the residual groups say "no
correction" with small departures where the frame's spectrum peak falls between bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.api import register
from omnitrain_plugins.pitch_codec import PitchCodec, PitchCodecConfig

STEPS = 4  # codes a residual group takes


@dataclass
class PitchGroupsConfig(PitchCodecConfig):
    groups: int = 3  # codes a frame: the pitch token, then groups - 1 residuals


@register("codec", "pitch_groups", config=PitchGroupsConfig)
class PitchGroupsCodec(PitchCodec):
    """Pitch + loudness token, then residual pitch codes (frames of ``groups`` codes)."""

    def __init__(self, cfg: PitchGroupsConfig) -> None:
        super().__init__(cfg)
        if cfg.groups < 1:
            raise ValueError(f"codec.groups must be at least 1, got {cfg.groups}")
        self.groups = cfg.groups

    def _peak_semitones(self, wave: Tensor) -> Tensor:
        """Each frame's spectrum peak in (fractional) semitones above f_low."""
        c = self.cfg
        n = wave.numel() // c.hop_length
        frames = wave[: n * c.hop_length].view(n, c.hop_length)
        spec = torch.fft.rfft(frames * torch.hann_window(c.hop_length), n=8192).abs()
        hz = spec.argmax(-1).float() * c.sample_rate / 8192
        return 12 * torch.log2(hz.clamp_min(1.0) / c.f_low)

    def encode(self, wave: Tensor) -> Tensor:
        wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        first = super().encode(wave)
        if self.groups == 1 or first.numel() == 0:
            return first if self.groups == 1 else first[:, None]
        semitone = ((first - 1).clamp_min(0) // self.cfg.levels).float()
        left = self._peak_semitones(wave) - semitone
        codes = [first]
        for g in range(1, self.groups):
            step = 1.0 / STEPS**g
            code = (torch.round(left / step) + STEPS // 2).clamp(0, STEPS - 1)
            left = left - (code - STEPS // 2) * step
            codes.append(torch.where(first > 0, code.long(), torch.full_like(first, STEPS // 2)))
        return torch.stack(codes, -1)

    def decode(self, tokens: Tensor) -> Tensor:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if tokens.dim() == 1 or tokens.shape[-1] == 1:
            return super().decode(tokens.reshape(-1))
        c = self.cfg
        first = tokens[:, 0].clamp(0, self.vocab_size - 1)
        voiced = first > 0
        semitone = ((first - 1).clamp_min(0) // c.levels).float()
        for g in range(1, tokens.shape[1]):
            semitone = semitone + (tokens[:, g].clamp(0, STEPS - 1) - STEPS // 2).float() / STEPS**g
        return self.synthesize(semitone, (first - 1).clamp_min(0) % c.levels, voiced)
