"""``--asr pocketsphinx``: offline English recognition with the acoustic model and
dictionary the ``pocketsphinx`` package ships (``pip install omnitrain[eval]``). Open
vocabulary by default (its English language model); restricted to a closed vocabulary,
a word loop over those words (any sequence of them), so errors stay visible."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import Tensor

from omnitrain.evaluation.errors import EvalError
from omnitrain.evaluation.scorers import SpeechRecognizer, register_asr

RATE = 16000
_WORD = re.compile(r"^[a-z']+$")


class PocketsphinxASR(SpeechRecognizer):
    """Each recording is decoded by a fresh decoder (0.1 s to make): pocketsphinx adapts its
    cepstral mean from one utterance to the next, which would make a transcript depend on
    the recordings before it."""

    def __init__(self) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise ImportError("--asr pocketsphinx needs the pocketsphinx package: pip install 'omnitrain[eval]'") \
                from exc
        self._decoder_class = pocketsphinx.Decoder
        self.grammar: str | None = None  # JSGF of the word loop, when restricted
        self.dictionary = self._decoder()

    def _decoder(self):
        decoder = self._decoder_class(samprate=RATE, loglevel="FATAL")
        if self.grammar is not None:
            decoder.add_jsgf_string("vocabulary", self.grammar)
            decoder.activate_search("vocabulary")
        return decoder

    def restrict_to(self, vocabulary: Iterable[str]) -> None:
        vocabulary = set(vocabulary)
        unknown = sorted(w for w in vocabulary if not (_WORD.match(w) and self.dictionary.lookup_word(w)))
        if unknown:
            raise EvalError(f"pocketsphinx's English dictionary lacks {unknown}: score these texts with another "
                            f"--asr (e.g. whisper:PATH), or without --closed-vocabulary")
        if vocabulary:
            loop = " | ".join(sorted(vocabulary))
            self.grammar = f"#JSGF V1.0;\ngrammar vocabulary;\npublic <utt> = ( {loop} )+ ;\n"

    def transcribe(self, wave: Tensor, sample_rate: int) -> str:
        wave = wave.float().reshape(-1)
        if sample_rate != RATE:
            wave = torchaudio.functional.resample(wave, sample_rate, RATE)
        pcm = (torch.clamp(wave, -1, 1) * 32767).round().to(torch.int16).numpy()
        decoder = self._decoder()
        decoder.start_utt()
        decoder.process_raw(np.ascontiguousarray(pcm).tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


@register_asr("pocketsphinx")
def pocketsphinx_asr(path: Path | None) -> PocketsphinxASR:
    """Offline English (the model the pocketsphinx package ships); no :PATH."""
    if path is not None:
        raise EvalError("--asr pocketsphinx uses the English model its package ships: give no :PATH")
    return PocketsphinxASR()
