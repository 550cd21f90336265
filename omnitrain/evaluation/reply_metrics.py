"""The metrics of a model's replies that validation computes (``eval.metrics``), and how
each scored reply adds to them, so that summing over every rank's replies gives what
``omnitrain eval`` reports over the same replies (``omnitrain.evaluation.report``)."""

from __future__ import annotations

#: metric -> the scorer it needs (``eval.asr`` / ``eval.speaker``), or None
REPLY_METRICS: dict[str, str | None] = {
    "accuracy": None,  # exact match with the validation sample's own reply
    "wer": "asr",  # the spoken reply's transcript against what the reply said
    "cer": "asr",
    "wer_expected": "asr",  # the transcript against the sample's own reply
    "sim": "speaker",  # the spoken reply's voice against eval.reference
}


def metric_parts(row: dict) -> dict[str, tuple[float, float]]:
    """A scored reply's (sum, count) per metric it has: summed over many replies, sum /
    count is accuracy over the replies with an expected text, wer/cer as corpus rates (all
    edits over all reference words: a reply with no reference words still adds its
    insertions) and sim the mean."""
    parts: dict[str, tuple[float, float]] = {}
    if row.get("correct") is not None:
        parts["accuracy"] = (float(row["correct"]), 1.0)
    for key in ("wer", "cer", "wer_expected"):
        counts = row.get(f"_{key}")
        if counts is not None:
            parts[key] = (float(counts[0]), float(counts[1]))
    if row.get("sim") is not None:
        parts["sim"] = (float(row["sim"]), 1.0)
    return parts
