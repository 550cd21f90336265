"""Summarise a run's logged metrics (CSV): first, last and best value of each.

``last`` is the mean of the final few logged values, so one noisy batch does not
decide whether a loss fell.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass
class MetricSummary:
    name: str
    first: float
    last: float
    best: float
    points: int

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
        out.append(MetricSummary(name, values[0], last, min(values), len(values)))
    return out
