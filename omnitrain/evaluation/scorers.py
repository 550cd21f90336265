"""The models that score speech, registered by name like every other plugin: speech
recognisers (``--asr NAME[:PATH]``) and speaker encoders (``--speaker NAME[:PATH]``).
``PATH`` is a local folder of weights (nothing is downloaded); a scorer that ships its
weights in its package needs none. A user's scorer registers itself from any module
loaded with ``--plugins``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

from omnitrain.evaluation.errors import EvalError
from omnitrain.name_registry import Registry


class SpeechRecognizer(ABC):
    """Speech -> text. ``vocabulary`` (optional) is the closed set of words the items'
    texts use, for recognisers that can restrict themselves to it (a word-loop grammar:
    any sequence of those words, never the expected sentences themselves)."""

    @abstractmethod
    def transcribe(self, wave: Tensor, sample_rate: int) -> str:
        """A mono float waveform (samples,) in [-1, 1] -> its transcript."""

    def restrict_to(self, vocabulary: Iterable[str]) -> None:  # noqa: B027 - optional
        """Recognise only words of ``vocabulary`` (default: ignored)."""


class SpeakerEncoder(ABC):
    """Speech -> a voice embedding; similarity is the cosine of two embeddings."""

    @abstractmethod
    def embed(self, wave: Tensor, sample_rate: int) -> Tensor:
        """A mono float waveform (samples,) -> an embedding (D,)."""

    def similarity(self, a: Tensor, b: Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))


ScorerFactory = Callable[[Path | None], object]
ASR: Registry[ScorerFactory] = Registry("ASR model", "(register one with omnitrain.evaluation.scorers.register_asr)")
SPEAKER: Registry[ScorerFactory] = Registry(
    "speaker model", "(register one with omnitrain.evaluation.scorers.register_speaker)")


def register_asr(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """``@register_asr("name")`` on a factory ``(path or None) -> SpeechRecognizer``."""
    return lambda factory: ASR.add(name, factory, origin=f"{factory.__module__}.{factory.__qualname__}")


def register_speaker(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """``@register_speaker("name")`` on a factory ``(path or None) -> SpeakerEncoder``."""
    return lambda factory: SPEAKER.add(name, factory, origin=f"{factory.__module__}.{factory.__qualname__}")


def require_folder(path: Path | None, spec: str) -> Path:
    """The weights folder a scorer needs, or a clear error saying how to give one."""
    if path is None:
        raise EvalError(f"{spec} needs a local folder of weights: {spec}:PATH (nothing is downloaded)")
    if not path.is_dir():
        raise EvalError(f"{spec}:{path}: no such folder; give the folder a model was saved to "
                         f"(save_pretrained), e.g. one downloaded with huggingface-cli beforehand")
    return path
