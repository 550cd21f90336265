"""Streaming speech: the Thinker's text, the Talker's codes and the audio, all as they come.

The Talker starts on the Thinker's first reply token and lags it by one (it must know
whether a token is the last); every code goes to the chunked DiT decoder, every final
mel chunk to the chunked vocoder, and each audio chunk is handed out at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.inference.chunked_dit import chunked_decoder
from omnitrain.inference.chunked_vocoder import ChunkedVocoder
from omnitrain.slots import SpeechCondition


@dataclass
class TextPiece:
    text: str


@dataclass
class AudioPiece:
    wave: Tensor  # (samples,) at the speech sample rate
    start: int  # sample offset in the reply


class SpeechStream:
    """Codes in, audio chunks out."""

    def __init__(self, model, settings, cond: SpeechCondition, noise: Tensor) -> None:
        s = settings
        self.mel = chunked_decoder(model.dit, s.stream_mode, cond, noise, s.ode_steps, s.ode_method,
                                   s.guidance, s.ode_sway)
        self.chunked_vocoder = ChunkedVocoder(model.vocoder, model.speech_cfg.hop_length)
        self.samples = 0
        self.frames: list[Tensor] = []

    def _audio(self, frames: Tensor, final: bool) -> Iterator[AudioPiece]:
        self.frames.append(frames)
        wave = self.chunked_vocoder.push(frames, final)
        if wave.numel():
            yield AudioPiece(wave, self.samples)
            self.samples += wave.numel()

    def push(self, code: int) -> Iterator[AudioPiece]:
        frames = self.mel.push([code])
        if frames.shape[0]:
            yield from self._audio(frames, False)

    def finish(self) -> Iterator[AudioPiece]:
        if self.mel.codes:
            yield from self._audio(self.mel.finish(), True)

    @property
    def mel_frames(self) -> Tensor:
        return torch.cat(self.frames) if self.frames else torch.zeros(0)
