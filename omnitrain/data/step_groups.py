"""Micro-batches grouped into the optimizer steps Lightning will make of them, each told
its step's totals before the step's first backward.

With gradient accumulation, a per-token loss averaged per micro-batch weighs a
micro-batch of 10 target tokens as much as one of 4,000. Weighting by the whole step
needs the step's token count before its first backward, so the loader reads one step
ahead: it sums this rank's ``Batch.loss_counts`` over the step's micro-batches and
hands each of them the sums (``Batch.step_totals``); the LightningModule adds them up
over ranks once per step (``omnitrain.training.stages.step_weights``).

Lightning's rule: with ``accumulate_grad_batches`` A, the optimizer steps after batch
``batch_idx`` when ``(batch_idx + 1) % A == 0`` or on the epoch's last batch, and
``batch_idx`` restarts at 0 every epoch (one pass over the loader).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from omnitrain.data.batch import Batch


def group_steps(batches: Iterable[Batch], accumulate: int, epoch_length: int | None) -> Iterator[Batch]:
    """``batches`` (one epoch) in order, each with ``step_totals`` set: this rank's counts
    over the micro-batches of its optimizer step (``accumulate`` of them, fewer at the end
    of the epoch, ``epoch_length`` batches, or of the stream), and "micro_batches"."""
    if accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {accumulate}")
    source, read = iter(batches), 0
    while True:
        step: list[Batch] = []
        for batch in source:
            step.append(batch)
            read += 1
            if read % accumulate == 0 or read == epoch_length:
                break
        if not step:
            return
        totals = {"micro_batches": len(step)}
        for batch in step:
            for name, n in batch.loss_counts().items():
                totals[name] = totals.get(name, 0) + n
        for batch in step:
            yield replace(batch, step_totals=dict(totals))
