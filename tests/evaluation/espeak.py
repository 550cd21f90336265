"""Real speech for the tests: espeak-ng speaking English words in a chosen voice (the
spoken demo's engine, ``omnitrain.data.build.espeak``); tests skip where the
``espeakng-loader`` package is missing.

espeak-ng's samples depend on what the library said before in the same process (measured:
the same text in the same voice twice gives different samples), so a test whose numbers
were measured on exact recordings makes them with ``record``, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("espeakng_loader", reason="needs espeakng-loader (the dev extra's tests)")

from omnitrain.data.build.espeak import speak  # noqa: E402

# voices pocketsphinx hears well (measured: the digit test's WER) and resemblyzer tells apart
VOICES = ("en-us+f2", "en-us+f4", "en-gb-x-rp+f1", "en+m3", "en-us+m1")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

__all__ = ["DIGITS", "VOICES", "record", "speak"]

_RECORD = """
import json, sys
import soundfile as sf
from omnitrain.data.build.espeak import speak
for path, text, voice in json.load(sys.stdin):
    sf.write(path, speak(text, voice).numpy(), 16000)
"""


def record(items: list[tuple[str, str, str]]) -> None:
    """(wav path, text, voice) each written at 16 kHz by a fresh espeak-ng, in this order."""
    subprocess.run([sys.executable, "-c", _RECORD], input=json.dumps([[str(p), t, v] for p, t, v in items]),
                   text=True, check=True, capture_output=True)
