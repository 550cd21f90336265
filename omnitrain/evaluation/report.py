"""The eval report: each bundle's (or the audio's) item rows and summary, side by side on
the terminal and as JSON (``--out``). A metric the items cannot give is null, never 0."""

from __future__ import annotations

import json
import math
from pathlib import Path

METRICS = ("accuracy", "loss", "ppl", "wer", "cer", "wer_expected", "sim", "voice_id")


def summarise(rows: list[dict]) -> dict:
    """``items`` and each metric over the rows: accuracy over the rows with an expected
    text; loss and ppl from the summed token losses; wer/cer as corpus rates (all edits over
    all reference words); sim the mean."""
    summary: dict = {"items": len(rows)}
    scored = [r["correct"] for r in rows if r.get("correct") is not None]
    summary["accuracy"] = sum(scored) / len(scored) if scored else None
    nll = [r["_nll"] for r in rows if r.get("_nll") is not None]
    tokens = sum(n for _, n in nll)
    summary["loss"] = sum(s for s, _ in nll) / tokens if tokens else None
    summary["ppl"] = math.exp(summary["loss"]) if summary["loss"] is not None else None
    for key in ("wer", "cer", "wer_expected"):
        counts = [r[f"_{key}"] for r in rows if r.get(f"_{key}") is not None]
        total = sum(n for _, n in counts)
        summary[key] = sum(e for e, _ in counts) / total if total else None
    sims = [r["sim"] for r in rows if r.get("sim") is not None]
    summary["sim"] = sum(sims) / len(sims) if sims else None
    voiced = [r["voice_correct"] for r in rows if r.get("voice_correct") is not None]
    summary["voice_id"] = sum(voiced) / len(voiced) if voiced else None  # nearest voice = the one asked for
    return summary


def public(row: dict) -> dict:
    """An item row without the running sums kept for the summary."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def entry(rows: list[dict]) -> dict:
    return {"summary": summarise(rows), "items": [public(r) for r in rows]}


def table(report: dict) -> str:
    """Metrics down, bundles across."""
    names = list(report["bundles"])
    width = max([12, *(len(n) for n in names)])
    lines = [f"{'metric':<14}" + "".join(f"{n:>{width + 2}}" for n in names)]
    for key in ("items", *METRICS):
        cells = []
        for n in names:
            value = report["bundles"][n]["summary"].get(key)
            cells.append("-" if value is None else f"{value:d}" if isinstance(value, int) else f"{value:.4g}")
        lines.append(f"{key:<14}" + "".join(f"{c:>{width + 2}}" for c in cells))
    return "\n".join(lines)


def write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
