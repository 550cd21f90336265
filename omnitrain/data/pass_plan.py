"""One pass over a dataset, planned before a sample is read: which samples each rank x
loader worker ("slot") reads, in which order, in which batches.

A pass visits every sample not yet done exactly once: the shards in a seeded order that
changes per pass, their samples (those not yet done) split into one contiguous span per
slot, each span shuffled within windows of ``data.shuffle_buffer`` samples (the span is
read in file order, so the window is what a worker holds in memory) and cut into batches:

- ``samples`` batching: spans of equal size (to one sample), ``batch_size`` samples a
  batch, the span's last batch holding what is left (fewer);
- ``tokens`` batching: spans of about equal tokens, cut into batches that fill
  ``rows_per_batch`` rows of ``pack_length`` tokens (first fit decreasing over a buffer,
  ``budget.token_batches``) from each sample's recorded length.

Every slot then gets as many batches as the fullest one, rounded up to whole optimizer
steps (``trainer.accumulate_grad_batches``): a slot short of it repeats its own first
batches (marked ``repeat``, counted; without accumulation at most one batch per slot in
practice), so every rank takes the same number of whole steps and no sample is left out.

The plan is a pure function of (shard counts and lengths, seed, pass number, samples
already done, ranks, workers, batching), so every rank and worker computes the same
plan, and a resumed run can recompute the plan it was in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from omnitrain.config.typed import RunConfig
from omnitrain.data.budget import token_batches
from omnitrain.data.shard_index import ShardIndex


@dataclass(frozen=True)
class Batching:
    mode: str  # "samples" | "tokens"
    batch_size: int
    rows: int = 1
    row_length: int = 0
    buffer: int = 64
    window: int = 256
    max_tokens: int = 1 << 62
    patience: int = 4

    @classmethod
    def from_config(cls, cfg: RunConfig) -> Batching:
        d = cfg.data
        return cls(str(d.batching), int(d.batch_size), int(d.rows_per_batch), int(d.pack_length or 0),
                   int(d.budget_buffer), int(d.shuffle_buffer), int(d.max_tokens))


@dataclass(frozen=True)
class Layout:
    """How a pass is cut: everything the plan depends on besides the data."""

    seed: int
    world: int
    workers: int
    batching: Batching
    step: int = 1  # micro-batches per optimizer step: a pass holds whole steps

    @property
    def slots(self) -> int:
        return self.world * self.workers


@dataclass(frozen=True)
class PlannedBatch:
    ids: tuple[int, ...]  # global sample ids, in the batch's order
    rows: tuple[tuple[int, ...], ...] | None = None  # token batching: positions in ``ids`` per row
    repeat: bool = False  # a repeat that evens out the slots' batch counts


@dataclass
class PassPlan:
    number: int
    layout: Layout
    batches: list[list[PlannedBatch]]  # per slot, equally many
    left_out: int = 0  # samples of the pass in no batch
    repeated: int = 0  # samples in repeat batches
    samples: int = 0  # samples the pass set out to visit

    @property
    def per_slot(self) -> int:
        return max((len(x) for x in self.batches), default=0)

    @property
    def per_rank(self) -> int:
        """Batches each rank takes in this pass (rank batch j comes from worker role j % workers)."""
        return self.per_slot * self.layout.workers

    def slot(self, rank: int, role: int) -> int:
        return rank * self.layout.workers + role

    def role_batches(self, rank: int, role: int, start: int, stop: int) -> list[tuple[int, PlannedBatch]]:
        """(rank position j, batch) of worker role ``role`` for rank positions start <= j < stop."""
        w = self.layout.workers
        first = start + (role - start) % w
        return [(j, self.batches[self.slot(rank, role)][j // w]) for j in range(first, stop, w)]

    def for_rank(self, rank: int) -> PassPlan:
        """The plan with only ``rank``'s slots filled: what its loader workers need."""
        mine = range(self.slot(rank, 0), self.slot(rank + 1, 0))
        return replace(self, batches=[x if s in mine else [] for s, x in enumerate(self.batches)])

    def done_by(self, position: int) -> np.ndarray:
        """Global ids of every rank's batches before rank position ``position``."""
        w = self.layout.workers
        ids = [b.ids for s, slot in enumerate(self.batches) for b in slot[: len(range(s % w, position, w))]]
        return np.fromiter((i for batch in ids for i in batch), dtype=np.int64)


def plan_pass(index: ShardIndex, layout: Layout, number: int, done: np.ndarray | None = None) -> PassPlan:
    """The plan of pass ``number`` over the samples of ``index`` not in ``done`` (a bool
    mask over global ids, None: none done)."""
    b = layout.batching
    rng = np.random.default_rng([layout.seed, number, 0x5EED])
    offsets = index.offsets
    order = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in rng.permutation(len(index.counts))]
                           + [np.zeros(0, np.int64)])
    if done is not None:
        order = order[~done[order]]
    slots = layout.slots
    if b.mode == "tokens":
        cost = _plan_lengths(index, b)
        spans = _token_spans(order, cost, slots)
    else:
        spans = np.array_split(order, slots)
    batches = []
    for s, span in enumerate(spans):
        shuffled = _window_shuffle(span, b.window, np.random.default_rng([layout.seed, number, s, 1]))
        if b.mode == "tokens":
            batches.append([PlannedBatch(ids, rows) for ids, rows in
                            token_batches(shuffled, cost, b.rows, b.row_length, b.buffer, b.patience)])
        else:
            batches.append([PlannedBatch(tuple(int(i) for i in shuffled[k:k + b.batch_size]))
                            for k in range(0, len(shuffled), b.batch_size)])
    repeated = even_out(batches, whole_steps(batches, layout))
    in_batches = sum(len(bt.ids) for slot in batches for bt in slot if not bt.repeat)
    return PassPlan(number, layout, batches, left_out=len(order) - in_batches, repeated=repeated,
                    samples=len(order))


def whole_steps(batches: list[list[PlannedBatch]], layout: Layout) -> int:
    """Batches per slot for a pass of whole optimizer steps: the fullest slot's count,
    rounded up so that a rank's batches (that count x workers) fill whole steps. A short
    last step would not be one under DeepSpeed, which counts micro-batches across epochs."""
    most = max((len(x) for x in batches), default=0)
    while most * layout.workers % layout.step:
        most += 1
    return most


def plan_validation(index: ShardIndex, world: int, workers: int, batch_size: int) -> PassPlan:
    """Every sample exactly once over all ranks, in file order: near-equal contiguous spans,
    batches of ``batch_size`` (a span's last one may be smaller); slots with fewer batches
    repeat theirs (``repeat``: their metrics are not counted) so every rank runs as many."""
    layout = Layout(0, world, workers, Batching("samples", batch_size, window=1))
    spans = np.array_split(np.arange(index.total, dtype=np.int64), layout.slots)
    batches = [[PlannedBatch(tuple(int(i) for i in span[k:k + batch_size]))
                for k in range(0, len(span), batch_size)] for span in spans]
    repeated = even_out(batches)
    return PassPlan(0, layout, batches, repeated=repeated, samples=index.total)


def even_out(batches: list[list[PlannedBatch]], most: int | None = None) -> int:
    """Gives every slot ``most`` batches (default: as many as the fullest) by repeating its
    own (a slot with none repeats another's); returns the samples repeated."""
    most = max((len(x) for x in batches), default=0) if most is None else most
    repeated = 0
    for slot in batches:
        source = slot or next((x for x in batches if x), [])
        for j in range(most - len(slot)):
            again = source[j % len(source)]
            slot.append(PlannedBatch(again.ids, again.rows, repeat=True))
            repeated += len(again.ids)
    return repeated


def _window_shuffle(span: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    parts = [span[i:i + window] for i in range(0, len(span), max(1, window))]
    return np.concatenate([p[rng.permutation(len(p))] for p in parts] + [np.zeros(0, np.int64)])


def _plan_lengths(index: ShardIndex, b: Batching) -> np.ndarray:
    """Tokens each sample takes in a row; 0 for one that training will skip (unbuildable,
    or longer than ``data.max_tokens``): it rides along at no cost."""
    if index.lengths is None:
        raise ValueError("data.batching=tokens needs each sample's length (ShardIndex.lengths)")
    cost = np.where(index.lengths > b.max_tokens, 0, index.lengths)
    too_long = np.flatnonzero(cost > b.row_length)
    if too_long.size:
        raise ValueError(f"{too_long.size} sample(s) have more tokens than data.pack_length={b.row_length} "
                         f"(up to {int(cost.max())}); set data.max_tokens <= data.pack_length or raise pack_length")
    return cost


def _token_spans(order: np.ndarray, cost: np.ndarray, slots: int) -> list[np.ndarray]:
    """Contiguous spans of ``order`` with about equal tokens each (every sample in one)."""
    weight = np.cumsum(cost[order] + 1)  # +1: samples of no cost still spread out
    total = weight[-1] if len(weight) else 0
    cuts = np.searchsorted(weight, [total * k / slots for k in range(1, slots)], side="right")
    return np.split(order, cuts)
