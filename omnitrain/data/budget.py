"""Length-aware batching into a token budget, planned from each sample's length.

Each batch is ``rows`` rows of at most ``row_length`` tokens. Samples wait in a buffer of
``buffer``; a batch takes them longest first into the first row with room (first fit
decreasing), so short samples fill the gaps long ones leave and padding stays small. A
sample that has waited through ``patience`` batches goes first, so none starves. The
batches are planned before any sample is read (``pass_plan``), from the lengths in the
shards' index, so every rank knows its number of steps up front.
"""

from __future__ import annotations

import numpy as np

from omnitrain.data.batch import Batch

Planned = tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]  # (ids, rows as positions in ids)


def token_batches(order: np.ndarray, cost: np.ndarray, rows: int, row_length: int, buffer: int,
                  patience: int = 4) -> list[Planned]:
    """The batches of the ids in ``order``, where id ``i`` takes ``cost[i]`` tokens."""
    waiting: list[tuple[int, int]] = []  # (arrival batch, id)
    out: list[Planned] = []

    def emit() -> None:
        n = len(out)
        overdue = [i for i, (since, _) in enumerate(waiting) if n - since >= patience]
        late = set(overdue)
        rest = sorted((i for i in range(len(waiting)) if i not in late), key=lambda i: -cost[waiting[i][1]])
        room = [row_length] * rows
        filled: list[list[int]] = [[] for _ in range(rows)]
        for i in overdue + rest:
            need = int(cost[waiting[i][1]])
            for r, free in enumerate(room):
                if need <= free:
                    room[r] -= need
                    filled[r].append(i)
                    break
        filled = [r for r in filled if r]
        chosen = [i for r in filled for i in r]
        position = {i: k for k, i in enumerate(chosen)}
        out.append((tuple(int(waiting[i][1]) for i in chosen), tuple(tuple(position[i] for i in r) for r in filled)))
        taken = set(chosen)
        waiting[:] = [w for i, w in enumerate(waiting) if i not in taken]

    for sample in order:
        waiting.append((len(out), int(sample)))
        if len(waiting) >= buffer:
            emit()
    while waiting:
        emit()
    return out


def padding_waste(batch: Batch) -> float:
    """Share of the batch's token grid that is padding."""
    return 1.0 - batch.num_tokens / batch.input_ids.numel()
