"""Scores of spoken replies: the ASR transcript against what the reply said (``wer``,
``cer``: intelligibility, as seed-tts-eval) and against the expected text
(``wer_expected``), and the speaker similarity to a reference voice (``sim``)."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch
from torch import Tensor

from omnitrain.evaluation.scorers import SpeakerEncoder, SpeechRecognizer
from omnitrain.evaluation.text_scores import error_counts


def read_wave(path: str | Path) -> tuple[Tensor, int]:
    """A mono float waveform and its rate (channels averaged)."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.mean(1)), int(rate)


class SpeechScorer:
    """The run's recogniser and speaker encoder (either may be None: its metrics are null)."""

    def __init__(self, asr: SpeechRecognizer | None, speaker: SpeakerEncoder | None) -> None:
        self.asr, self.speaker = asr, speaker
        self._references: dict[str, Tensor] = {}

    def score(self, wave: Tensor, rate: int, said: str | None, expected: str | None = None,
              reference: str | None = None) -> dict:
        """One spoken reply's row: transcript, word/char edits and counts, similarity."""
        row: dict = {"transcript": None, "wer": None, "cer": None, "wer_expected": None, "sim": None}
        if wave.numel() == 0:
            return row
        if self.asr is not None:
            heard = self.asr.transcribe(wave, rate)
            row["transcript"] = heard
            for key, ref, unit in (("wer", said, "word"), ("cer", said, "char"), ("wer_expected", expected, "word")):
                if ref is not None:
                    edits, n = error_counts(ref, heard, unit)
                    row[f"_{key}"] = (edits, n)  # summed over items for the corpus rate
                    row[key] = edits / n if n else None
        if self.speaker is not None and reference is not None:
            row["sim"] = self.speaker.similarity(self.speaker.embed(wave, rate), self.reference(reference))
        return row

    def reference(self, path: str) -> Tensor:
        if path not in self._references:
            self._references[path] = self.speaker.embed(*read_wave(path))
        return self._references[path]
