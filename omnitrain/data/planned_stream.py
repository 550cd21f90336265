"""A rank's planned batches, read and built: the loader's dataset for one epoch.

A ``PassPlan`` says which samples form each batch; this reads them (each shard from the
first sample needed, skipping the rest), builds the Examples and collates the batches,
in the plan's order. Run by a DataLoader worker it yields the batches of the worker role
the round-robin gives it (rank batch j comes from worker j % workers, counted from the
epoch's first batch); run in the main process it yields all of the rank's batches.

A batch keeps its planned samples: a bad sample is skipped and counted, and a batch
whose samples are all bad becomes a repeat of a good one (counted), so every rank still
takes the planned number of steps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch
from omnitrain.data.examples import ExampleBuilder
from omnitrain.data.pass_plan import PassPlan, PlannedBatch
from omnitrain.data.sample_builder import Example, SampleError
from omnitrain.data.shard_index import ShardIndex
from omnitrain.data.skips import SKIPS
from omnitrain.data.tar_samples import read_shard


class SampleReader:
    """Raw samples by global id, for a known list of wanted ids: each shard is read once,
    forward, from its first wanted sample; samples met on the way that are wanted later
    wait in memory (about a shuffle window's worth, plus the few a repeat batch reuses)."""

    def __init__(self, index: ShardIndex, wanted: list[int]) -> None:
        self.urls, self.offsets = index.urls, index.offsets
        self.uses = Counter(wanted)  # a repeat batch wants a sample again
        self.first: dict[int, int] = {}  # shard -> first wanted ordinal
        for g in self.uses:
            s, o = self.locate(g)
            self.first[s] = min(self.first.get(s, o), o)
        self.waiting: dict[int, dict] = {}
        self.cursors: dict[int, Iterator[tuple[int, dict]]] = {}
        self.ended: set[int] = set()  # shards read to their end

    def locate(self, g: int) -> tuple[int, int]:
        s = int(np.searchsorted(self.offsets, g, side="right")) - 1
        return s, int(g - self.offsets[s])

    def get(self, g: int, keep: bool = False) -> dict | None:
        """The sample with global id ``g`` (None if its shard ended before it); ``keep``: a
        look that does not count as a use."""
        if g not in self.waiting:
            self._read_to(g)
        if keep:
            return self.waiting.get(g)
        self.uses[g] -= 1
        return self.waiting.pop(g, None) if self.uses[g] <= 0 else self.waiting.get(g)

    def _read_to(self, g: int) -> None:
        s, o = self.locate(g)
        if s in self.ended:
            return
        if s not in self.cursors:
            self.cursors[s] = read_shard(self.urls[s], start=self.first[s])
        for ordinal, sample in self.cursors[s]:
            here = int(self.offsets[s]) + ordinal
            if self.uses[here] > 0:
                self.waiting[here] = sample
            if ordinal >= o:
                return
        self.cursors.pop(s)
        self.ended.add(s)

    def close(self) -> None:
        for cursor in self.cursors.values():
            cursor.close()
        self.cursors.clear()


class PlannedStream(IterableDataset):
    """Rank positions ``start <= j < stop`` of ``plan`` for ``rank``; ``length`` is what
    ``len()`` reports (an epoch resumed in its middle still has its full length)."""

    def __init__(self, cfg: RunConfig, index: ShardIndex, plan: PassPlan, rank: int, start: int, stop: int,
                 length: int, collate, build: ExampleBuilder | None = None) -> None:
        """``build``: an ``ExampleBuilder`` to reuse (its tokenizer and processors are built once)."""
        self.cfg, self.index, self.plan, self.rank = cfg, index, plan, rank
        self.start, self.stop, self.length, self.collate = start, stop, length, collate
        self.build = build

    def __len__(self) -> int:
        return self.length

    def batches(self) -> list[tuple[int, PlannedBatch]]:
        """This process's share: one worker role's batches, or all in the main process."""
        info = get_worker_info()
        workers = self.plan.layout.workers
        if info is None:
            return [(j, self.plan.batches[self.plan.slot(self.rank, j % workers)][j // workers])
                    for j in range(self.start, self.stop)]
        if info.num_workers != workers:
            raise RuntimeError(f"planned for {workers} loader workers, running in {info.num_workers}")
        role = (self.start + info.id) % workers
        return self.plan.role_batches(self.rank, role, self.start, self.stop)

    def __iter__(self) -> Iterator[Batch]:
        mine = self.batches()
        reader = SampleReader(self.index, [g for _, b in mine for g in b.ids])
        try:
            yield from self._batches(mine, reader, self.build or ExampleBuilder(self.cfg))
        finally:
            reader.close()

    def _batches(self, mine, reader: SampleReader, build) -> Iterator[Batch]:
        last_good: Example | None = None
        for n, (j, planned) in enumerate(mine):
            examples = [ex for g in planned.ids if (ex := self._example(reader, build, g)) is not None]
            repeat = planned.repeat
            if not examples:  # nothing usable: repeat a good sample, so the step still happens
                last_good = last_good or self._good_ahead(reader, build, mine[n + 1:])
                examples, repeat = [last_good], True
            else:
                last_good = examples[-1]
            rows = planned.rows if planned.rows is not None and len(examples) == len(planned.ids) else None
            batch = self.collate(examples, rows=_fitting(rows, examples, self.cfg))
            batch.stream = {"pass": self.plan.number, "position": j, "repeat": repeat}
            yield batch

    def _example(self, reader: SampleReader, build, g: int, keep: bool = False) -> Example | None:
        sample = reader.get(g, keep=keep)
        if sample is None:
            s, o = reader.locate(g)
            if not keep:
                SKIPS.add("missing_sample", f"{self.index.urls[s]}#{o}",
                          "the shard ended before this sample (it holds fewer samples than its index says)")
            return None
        return build(sample, count_skips=not keep)

    def _good_ahead(self, reader, build, rest) -> Example:
        for _, planned in rest:
            for g in planned.ids:
                if (ex := self._example(reader, build, g, keep=True)) is not None:
                    return ex
        raise SampleError("no sample left in this loader's share could be used: the data or the config is wrong, "
                          "not a few samples (the skipped ones are counted and the first ones logged)")


def _fitting(rows, examples: list[Example], cfg: RunConfig):
    """The planned rows if the samples are as long as planned for (they fit); else None:
    collate packs them again (by ``data.pack_length``)."""
    if rows is None:
        return None
    limit = cfg.data.pack_length
    if limit and any(sum(len(examples[i]) for i in row) > limit for row in rows):
        return None
    return [list(r) for r in rows]


class TrainStream(IterableDataset):
    """The training loader's dataset for the whole run: each iteration plays the epoch that
    starts at run batch ``begin.value``, which the data module sets before every epoch
    (shared memory, so persistent loader workers see it); the workers plan later passes
    themselves from the same schedule. ``length`` is the current epoch's, for ``len()``."""

    def __init__(self, cfg: RunConfig, schedule, rank: int, begin, length: int, collate) -> None:
        self.cfg, self.schedule, self.rank, self.collate = cfg, schedule, rank, collate
        self.begin, self.length = begin, length
        self.build = ExampleBuilder(cfg)  # built in each worker on first use, then kept

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.schedule.epoch_at(int(self.begin.value))
        seg = epoch.segment
        return iter(PlannedStream(self.cfg, self.schedule.index, seg.plan, self.rank, epoch.begin - seg.start,
                                  epoch.stop - seg.start, epoch.length, self.collate, self.build))
