"""Real speech for the tests: espeak-ng speaking English words in a chosen voice (the
spoken demo's engine, ``omnitrain.data.build.espeak``); tests skip where the
``espeakng-loader`` package is missing."""

from __future__ import annotations

import pytest

pytest.importorskip("espeakng_loader", reason="needs espeakng-loader (the dev extra's tests)")

from omnitrain.data.build.espeak import speak  # noqa: E402

# voices pocketsphinx hears well (measured: the digit test's WER) and resemblyzer tells apart
VOICES = ("en-us+f2", "en-us+f4", "en-gb-x-rp+f1", "en+m3", "en-us+m1")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

__all__ = ["DIGITS", "VOICES", "speak"]
