"""Summarise a run's logged metrics (CSV): first, last and best value of each.

``last`` is the mean of the final few logged values, so one noisy batch does not
decide whether a loss fell. ``best`` is the highest value of a metric that is better
high (throughput, MFU, accuracies) and the lowest of one that is better low (losses,
errors, memory, data wait); learning rates and gradient norms have no best.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

# substrings of a metric's name (lower case) that decide its direction, checked in order
_LOW = ("loss", "l1", "l2", "mse", "error", "wer", "cer", "perplexity", "ppl", "memory", "data_wait", "skipped",
        "nonfinite")
_HIGH = ("acc", "bleu", "f1", "precision", "recall", "mfu", "score", "similarity")


def better(name: str) -> str | None:
    """'high', 'low', or None (no best: learning rates, gradient norms, epochs)."""
    low = name.lower()
    if low.startswith(("lr-", "lr/", "grad/", "epoch")) or low in ("step", "lr"):
        return None
    if any(word in low for word in _LOW):
        return "low"
    if low.startswith("perf/") or any(word in low for word in _HIGH):
        return "high"
    return "low"  # the rest are losses of some kind (train/text, val/codec, ...)


@dataclass
class MetricSummary:
    name: str
    first: float
    last: float
    best: float  # nan where the metric has no better direction
    points: int
    better: str | None = None  # 'high' | 'low' | None

    @property
    def ratio(self) -> float:
        return self.last / self.first if self.first else float("nan")


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"no metrics at {path}: was the run logged with the CSV logger?")
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row.get("step") or 0)
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((step, float(value)))
    return series


def summarise(run_dir: Path, tail: int = 5) -> list[MetricSummary]:
    out = []
    for name, points in sorted(read_metrics(run_dir).items()):
        values = [v for _, v in sorted(points)]
        last = sum(values[-tail:]) / len(values[-tail:])
        direction = better(name)
        best = max(values) if direction == "high" else min(values) if direction == "low" else float("nan")
        out.append(MetricSummary(name, values[0], last, best, len(values), direction))
    return out
