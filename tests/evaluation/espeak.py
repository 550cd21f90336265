"""Real speech for the tests: espeak-ng (GPL; used only here, through the
``espeakng-loader`` package, which ships the library and its voices) speaking English words
in a chosen voice, as 16-bit PCM resampled to the rate asked for."""

from __future__ import annotations

import ctypes
import os
from functools import cache

import numpy as np
import pytest
import torch
import torchaudio

# voices pocketsphinx hears well (measured: the digit test's WER) and resemblyzer tells apart
VOICES = ("en-us+f2", "en-us+f4", "en-gb-x-rp+f1", "en+m3", "en-us+m1")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _ESPEAK_RATE, _ESPEAK_WORDGAP = 2, 1, 1, 7


class _Espeak:
    def __init__(self) -> None:
        loader = pytest.importorskip("espeakng_loader", reason="needs espeakng-loader (the eval extra's tests)")
        self.lib = ctypes.CDLL(loader.get_library_path())
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                               os.path.dirname(loader.get_data_path()).encode(), 0)
        assert self.rate > 0, "espeak-ng did not start"
        self.chunks: list[np.ndarray] = []
        self._keep = _CALLBACK(self._collect)  # referenced, or the callback is freed
        self.lib.espeak_SetSynthCallback(self._keep)

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, text: str, voice: str, words_per_minute: int = 150, word_gap_ms: int = 0) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
        self.lib.espeak_SetParameter(_ESPEAK_WORDGAP, word_gap_ms // 10, 0)
        self.chunks.clear()
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(0))  # the voices' breath and flutter noise, reproducible
        data = text.encode() + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks)


@cache
def _engine() -> _Espeak:
    return _Espeak()


def speak(text: str, voice: str, rate: int = 16000, words_per_minute: int = 150, word_gap_ms: int = 0) -> torch.Tensor:
    """``text`` spoken by ``voice``: a float waveform (samples,) at ``rate``."""
    engine = _engine()
    wave = torch.from_numpy(engine.say(text, voice, words_per_minute, word_gap_ms).astype(np.float32) / 32768)
    return torchaudio.functional.resample(wave, engine.rate, rate) if rate != engine.rate else wave
