"""Validation's reply metrics, summed over ranks as (sum, count), are what
``omnitrain eval``'s summary gives over the same rows: corpus wer/cer (edits over all
reference words, not the mean of per-reply rates), accuracy over replies with an
expected text, the mean similarity."""

from __future__ import annotations

import pytest

from omnitrain.evaluation.reply_metrics import REPLY_METRICS, metric_parts
from omnitrain.evaluation.report import summarise


def test_weighted_parts_give_the_eval_summary():
    rows = [
        {"correct": True, "_wer": (0, 2), "_cer": (1, 9), "_wer_expected": (1, 2), "sim": 0.9},
        {"correct": False, "_wer": (3, 6), "_cer": (5, 20), "_wer_expected": (2, 6), "sim": 0.5},
        {"correct": None, "_wer": (1, 1), "_cer": None, "_wer_expected": None, "sim": None},
        {"correct": False, "_wer": (2, 0)},  # no reference words: no rate
    ]
    sums: dict[str, list[float]] = {}
    for row in rows:
        for name, (part, count) in metric_parts(row).items():
            total = sums.setdefault(name, [0.0, 0.0])
            total[0] += part
            total[1] += count
    summary = summarise(rows)
    assert set(sums) == set(REPLY_METRICS)
    for name, (weighted, weight) in sums.items():
        assert weighted / weight == pytest.approx(summary[name]), name
    assert summary["wer"] == pytest.approx(6 / 9)  # not the mean of the rates; the last row's insertions count
