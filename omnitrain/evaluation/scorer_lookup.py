"""A scorer from its command-line name, ``NAME`` or ``NAME:PATH``: the built-in scorers
registered first, an unknown name answered with the registered ones, a scorer whose package
is missing with the install command."""

from __future__ import annotations

from pathlib import Path

from omnitrain.evaluation.errors import EvalError
from omnitrain.evaluation.scorers import (
    ASR,
    SPEAKER,
    ScorerFactory,
    SpeakerEncoder,
    SpeechRecognizer,
)
from omnitrain.name_registry import Registry


def load_builtin_scorers() -> None:
    """Import the built-in scorers (each imports its heavy dependency only when built)."""
    from omnitrain.evaluation import hf_scorers, pocketsphinx_asr, resemblyzer_speaker  # noqa: F401


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """``NAME`` or ``NAME:PATH`` -> (name, path or None)."""
    name, _, path = spec.partition(":")
    return name, Path(path).expanduser() if path else None


def build_asr(spec: str) -> SpeechRecognizer:
    return _build(ASR, spec)


def build_speaker(spec: str) -> SpeakerEncoder:
    return _build(SPEAKER, spec)


def _build(registry: Registry[ScorerFactory], spec: str):
    load_builtin_scorers()
    name, path = parse_spec(spec)
    if name not in registry:
        raise EvalError(registry.unknown(name))
    try:
        return registry.get(name)(path)
    except ImportError as exc:  # the scorer's package is not installed: the message says which
        raise EvalError(str(exc)) from None
