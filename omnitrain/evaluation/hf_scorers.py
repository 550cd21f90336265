"""``--asr whisper:PATH`` and ``--speaker wavlm:PATH``: transformers models read from a
local folder (``save_pretrained``, or a snapshot downloaded beforehand; nothing is
downloaded here): what seed-tts-eval scores with (Whisper-large-v3 for English WER,
WavLM-large fine-tuned for speaker verification). Audio is resampled to the model's
feature extractor's rate with torchaudio, then processed as transformers does."""

from __future__ import annotations

from pathlib import Path

import torch
import torchaudio
from torch import Tensor

from omnitrain.evaluation.scorers import (
    SpeakerEncoder,
    SpeechRecognizer,
    register_asr,
    register_speaker,
    require_folder,
)


def _at_rate(wave: Tensor, rate: int, want: int) -> Tensor:
    wave = wave.float().reshape(-1)
    return torchaudio.functional.resample(wave, rate, want) if rate != want else wave


class WhisperASR(SpeechRecognizer):
    def __init__(self, path: Path, language: str | None = "en") -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(path, local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True).eval()
        lang_to_id = getattr(self.model.generation_config, "lang_to_id", None) or {}
        self.language = language if f"<|{language}|>" in lang_to_id else None  # English-only or tiny models: none

    @torch.no_grad()
    def transcribe(self, wave: Tensor, sample_rate: int) -> str:
        rate = self.processor.feature_extractor.sampling_rate
        features = self.processor(_at_rate(wave, sample_rate, rate).numpy(), sampling_rate=rate,
                                  return_tensors="pt").input_features
        kwargs = {"language": self.language, "task": "transcribe"} if self.language else {}
        ids = self.model.generate(features.to(self.model.dtype), **kwargs)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


class WavLMSpeaker(SpeakerEncoder):
    def __init__(self, path: Path) -> None:
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.features = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        self.model = WavLMForXVector.from_pretrained(path, local_files_only=True).eval()

    @torch.no_grad()
    def embed(self, wave: Tensor, sample_rate: int) -> Tensor:
        rate = self.features.sampling_rate
        inputs = self.features(_at_rate(wave, sample_rate, rate).numpy(), sampling_rate=rate, return_tensors="pt")
        return self.model(**inputs).embeddings[0]


@register_asr("whisper")
def whisper_asr(path: Path | None) -> WhisperASR:
    """transformers Whisper from a local folder (seed-tts-eval: whisper-large-v3): whisper:PATH."""
    return WhisperASR(require_folder(path, "whisper"))


@register_speaker("wavlm")
def wavlm_speaker(path: Path | None) -> WavLMSpeaker:
    """transformers WavLMForXVector from a local folder (seed-tts-eval: WavLM-large): wavlm:PATH."""
    return WavLMSpeaker(require_folder(path, "wavlm"))
