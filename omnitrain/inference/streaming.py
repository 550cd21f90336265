"""Streaming speech: the Thinker's text, the Talker's codes and the audio, all as they come.

The Talker starts on the Thinker's first reply token and lags it by one (it must know
whether a token is the last); every code goes to the chunked DiT decoder, every final
mel chunk to the chunked vocoder, and each audio chunk is handed out at once. A vocoder
that decodes codes (``CodesVocoder``, with ``dit=none``) takes the codes in chunks instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.inference.chunked_codes import ChunkedCodes
from omnitrain.inference.chunked_dit import chunked_decoder
from omnitrain.inference.chunked_vocoder import ChunkedVocoder
from omnitrain.slots import CodesVocoder, SpeechCondition


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
        self.samples = 0
        self.frames: list[Tensor] = []
        self.codes_to_wave: ChunkedCodes | None = None
        if isinstance(model.vocoder, CodesVocoder):  # no DiT, no mel: the vocoder decodes codes
            self.codes_to_wave = ChunkedCodes(model.vocoder, cond)
            return
        self.mel = chunked_decoder(model.dit, s.stream_mode, cond, noise, s.ode_steps, s.ode_method,
                                   s.guidance, s.ode_sway)
        self.chunked_vocoder = ChunkedVocoder(model.vocoder, model.speech_cfg.hop_length)

    def _wave(self, wave: Tensor) -> Iterator[AudioPiece]:
        if wave.numel():
            yield AudioPiece(wave, self.samples)
            self.samples += wave.numel()

    def _audio(self, frames: Tensor, final: bool) -> Iterator[AudioPiece]:
        self.frames.append(frames)
        yield from self._wave(self.chunked_vocoder.push(frames, final))

    def push(self, code: int | Tensor) -> Iterator[AudioPiece]:
        if self.codes_to_wave is not None:
            yield from self._wave(self.codes_to_wave.push(code))
            return
        frames = self.mel.push([code])
        if frames.shape[0]:
            yield from self._audio(frames, False)

    def finish(self) -> Iterator[AudioPiece]:
        if self.codes_to_wave is not None:
            yield from self._wave(self.codes_to_wave.finish())
        elif self.mel.codes:
            yield from self._audio(self.mel.finish(), True)

    @property
    def mel_frames(self) -> Tensor:
        return torch.cat(self.frames) if self.frames else torch.zeros(0)
