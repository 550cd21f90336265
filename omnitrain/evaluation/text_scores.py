"""Word and character error rates, as seed-tts-eval computes them: both texts normalised
(lower case, punctuation dropped, spaces collapsed), then the edit distance over words (or
characters, spaces left out) divided by the reference's length."""

from __future__ import annotations

import re
import unicodedata

_PUNCTUATION = re.compile(r"[^\w\s']|_")


def normalise(text: str) -> str:
    """Lower case, punctuation (but apostrophes) dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance: substitutions, deletions and insertions, each costing 1."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1]


def error_counts(reference: str, hypothesis: str, unit: str = "word") -> tuple[int, int]:
    """(edits, reference length) in words or, with ``unit="char"``, characters."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if unit == "char":
        return edit_distance(list(ref.replace(" ", "")), list(hyp.replace(" ", ""))), len(ref.replace(" ", ""))
    return edit_distance(ref.split(), hyp.split()), len(ref.split())


def error_rate(pairs: list[tuple[str, str]], unit: str = "word") -> float | None:
    """Corpus error rate over (reference, hypothesis) pairs: all edits over all reference
    units (None: no reference has any)."""
    edits = total = 0
    for ref, hyp in pairs:
        e, n = error_counts(ref, hyp, unit)
        edits, total = edits + e, total + n
    return edits / total if total else None
