"""Mel frames -> waveform chunk by chunk: each chunk is vocoded with ``context_frames``
of mel on both sides (where they exist yet) and cut back to its own frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from omnitrain.slots import Vocoder


class ChunkedVocoder:
    def __init__(self, vocoder: Vocoder, hop_length: int) -> None:
        self.vocoder, self.hop = vocoder, hop_length
        self.mel: list[Tensor] = []
        self.frames = 0
        self.done = 0  # frames already turned into samples

    @torch.no_grad()
    def push(self, frames: Tensor, final: bool = False) -> Tensor:
        """Add mel frames (n, n_mels); return the samples that are now final."""
        if frames.shape[0]:
            self.mel.append(frames)
            self.frames += frames.shape[0]
        ctx = self.vocoder.context_frames
        upto = self.frames if final else self.frames - ctx
        if upto <= self.done:
            return torch.zeros(0)
        mel = torch.cat(self.mel)
        lo, hi = max(0, self.done - ctx), min(self.frames, upto + ctx)
        wave = self.vocoder(mel[lo:hi][None])[0]
        piece = wave[(self.done - lo) * self.hop: (upto - lo) * self.hop]
        want = (upto - self.done) * self.hop
        piece = F.pad(piece, (0, want - piece.shape[0]))  # e.g. Griffin-Lim's last hop
        self.done = upto
        return piece.float()
