"""Length-aware batching into a token budget.

Each batch is ``rows`` rows of at most ``row_length`` tokens. Samples wait in a buffer;
a batch takes them longest first into the first row with room (first fit decreasing),
so short samples fill the gaps long ones leave and padding stays small. A sample that
has waited through ``patience`` batches goes first, so none starves. The number of
batches per epoch is fixed elsewhere (``with_epoch``), so every rank takes the same
number of steps however many samples each batch holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from omnitrain.data.batch import Batch
from omnitrain.data.sample_builder import Example


class TokenBudgetBatches:
    def __init__(self, rows: int, row_length: int, buffer: int,
                 collate: Callable[..., Batch], patience: int = 4) -> None:
        """``collate(examples, rows=[[indices], ...])`` builds the batch."""
        self.rows, self.row_length, self.buffer = rows, row_length, buffer
        self.collate, self.patience = collate, patience

    def choose(self, waiting: list[tuple[int, Example]], batch_no: int) -> list[list[int]]:
        """Rows of indices into ``waiting`` (of (arrival batch, example)) that fill the budget."""
        overdue = [i for i, (since, _) in enumerate(waiting) if batch_no - since >= self.patience]
        late = set(overdue)
        rest = sorted((i for i in range(len(waiting)) if i not in late), key=lambda i: -len(waiting[i][1]))
        room = [self.row_length] * self.rows
        rows: list[list[int]] = [[] for _ in range(self.rows)]
        for i in overdue + rest:
            n = len(waiting[i][1])
            for r, free in enumerate(room):
                if n <= free:
                    room[r] -= n
                    rows[r].append(i)
                    break
        return [row for row in rows if row]

    def __call__(self, examples: Iterator[Example]) -> Iterator[Batch]:
        waiting: list[tuple[int, Example]] = []
        batch_no = 0
        for ex in examples:
            if len(ex) > self.row_length:
                raise ValueError(f"sample {ex.key} has {len(ex)} tokens > data.pack_length={self.row_length}; "
                                 "set data.max_tokens <= data.pack_length")
            waiting.append((batch_no, ex))
            if len(waiting) >= self.buffer:
                yield self._emit(waiting, batch_no)
                batch_no += 1
        while waiting:  # a finite stream: empty the buffer
            yield self._emit(waiting, batch_no)
            batch_no += 1

    def _emit(self, waiting: list[tuple[int, Example]], batch_no: int) -> Batch:
        rows = self.choose(waiting, batch_no)
        order = [i for row in rows for i in row]
        batch = [waiting[i][1] for i in order]
        slot = {i: k for k, i in enumerate(order)}
        chosen = set(order)
        waiting[:] = [w for i, w in enumerate(waiting) if i not in chosen]
        return self.collate(batch, rows=[[slot[i] for i in row] for row in rows])


def padding_waste(batch: Batch) -> float:
    """Share of the batch's token grid that is padding."""
    return 1.0 - batch.num_tokens / batch.input_ids.numel()
