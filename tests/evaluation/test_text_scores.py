"""Word and character error rates against hand-counted edits."""

from __future__ import annotations

import pytest

from omnitrain.evaluation.text_scores import edit_distance, error_counts, error_rate, normalise


def test_normalising_drops_case_punctuation_and_extra_spaces_but_keeps_apostrophes():
    assert normalise("  Hello,   World!  It's 3-7. ") == "hello world it's 3 7"


@pytest.mark.parametrize(("ref", "hyp", "edits"), [
    ("a b c", "a b c", 0),
    ("a b c", "a x c", 1),  # one substitution
    ("a b c", "a c", 1),  # one deletion
    ("a b c", "a b c d", 1),  # one insertion
    ("a b c", "c b a", 2),  # two substitutions (a<->c), b kept
    ("", "a b", 2),
    ("a b", "", 2),
])
def test_edit_distance_counts_substitutions_deletions_and_insertions(ref, hyp, edits):
    assert edit_distance(ref.split(), hyp.split()) == edits


def test_word_and_character_counts_and_the_corpus_rate():
    assert error_counts("Three, seven.", "three eleven") == (1, 2)
    assert error_counts("three seven", "three eleven", unit="char") == (2, 10)  # s(even) -> el(even)
    # the corpus rate is all edits over all reference words, not the mean of the items' rates
    assert error_rate([("a b c d", "a b c d"), ("a", "b")]) == pytest.approx(1 / 5)
    assert error_rate([("", "anything")]) is None
