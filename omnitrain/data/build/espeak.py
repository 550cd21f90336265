"""Real speech offline: espeak-ng (GPL) through the ``espeakng-loader`` package, which ships
the library and its voices (no system install). Loaded with ctypes only when asked for (the
spoken demo, the tests), never a dependency of training or inference."""

from __future__ import annotations

import ctypes
import os
from functools import cache

import numpy as np
import torch
import torchaudio

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_WORDGAP = 2, 1, 1, 3, 7


class Espeak:
    """One espeak-ng engine (a process-wide library): text -> 16-bit PCM at its own rate."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise ImportError("real speech needs espeak-ng from the espeakng-loader package: "
                              "pip install espeakng-loader==0.2.4 (in omnitrain's dev extra)") from exc
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                               os.path.dirname(espeakng_loader.get_data_path()).encode(), 0)
        if self.rate <= 0:
            raise RuntimeError("espeak-ng did not start (espeak_Initialize failed)")
        self.chunks: list[np.ndarray] = []
        self._keep = _CALLBACK(self._collect)  # referenced, or the callback is freed
        self.lib.espeak_SetSynthCallback(self._keep)

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, text: str, voice: str, words_per_minute: int = 150, word_gap_ms: int = 0,
            pitch: int | None = None) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
        self.lib.espeak_SetParameter(_ESPEAK_WORDGAP, word_gap_ms // 10, 0)
        if pitch is not None:  # 0-100, the voice's own base pitch when not given
            self.lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        self.chunks.clear()
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(0))  # the voices' breath and flutter noise, reproducible
        data = text.encode() + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@cache
def engine() -> Espeak:
    return Espeak()


def speak(text: str, voice: str, rate: int = 16000, words_per_minute: int = 150, word_gap_ms: int = 0,
          pitch: int | None = None) -> torch.Tensor:
    """``text`` spoken by ``voice``: a float waveform (samples,) at ``rate``."""
    e = engine()
    wave = torch.from_numpy(e.say(text, voice, words_per_minute, word_gap_ms, pitch).astype(np.float32) / 32768)
    return torchaudio.functional.resample(wave, e.rate, rate) if rate != e.rate else wave
