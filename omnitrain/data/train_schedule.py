"""Where the training stream stands, as a function of the batches a rank has trained on.

The stream is pass after pass (``pass_plan``). An epoch is one pass, or, with
``data.epoch_batches``, at most that many batches of it: the next epoch continues the
same pass where the last stopped, so short epochs still cover the data. What a
checkpoint keeps (``state``) is enough to rebuild the plan the run was in: the pass
number, the samples done before that plan was made, and where the plan and the running
epoch began. A run resumed with the same ranks, workers and batching rebuilds the same
plan and continues it batch for batch; with others, the samples of the pass not yet
trained on are planned again for the new layout (none twice, none lost).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from omnitrain.data.pass_plan import Batching, Layout, PassPlan, plan_pass
from omnitrain.data.shard_index import ShardIndex

log = logging.getLogger("omnitrain.data")
STATE_VERSION = 1


@dataclass
class Segment:
    """A plan placed on the run's batch axis (per rank)."""

    plan: PassPlan
    start: int  # run batch of the plan's first batch
    anchor: int  # run batch where the epoch running at ``start`` began (``start`` for a fresh pass)
    done: np.ndarray | None  # samples done before the plan was made

    @property
    def end(self) -> int:
        return self.start + self.plan.per_rank


@dataclass(frozen=True)
class Epoch:
    segment: Segment
    first: int  # run batch where the epoch began: Lightning counts the epoch's length from it
    begin: int  # run batch to read from (later than ``first`` when resumed inside the epoch)
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.first


class TrainSchedule:
    def __init__(self, index: ShardIndex, layout: Layout, epoch_batches: int | None, first: Segment,
                 rank: int | None = None) -> None:
        """``epoch_batches`` is rounded up to whole optimizer steps (``layout.step``); with
        ``rank``, plans keep that rank's batches only (what its loader and checkpoint need)."""
        step = layout.step
        self.index, self.layout, self.rank = index, layout, rank
        self.epoch_batches = -(-epoch_batches // step) * step if epoch_batches else None
        first.plan = self._mine(first.plan)
        self.segments = [first]
        _describe(first, index)

    def _mine(self, plan: PassPlan) -> PassPlan:
        return plan if self.rank is None else plan.for_rank(self.rank)

    # ---- the timeline ------------------------------------------------------------------
    def segment_at(self, batch: int) -> Segment:
        """The segment holding run batch ``batch`` (fresh passes are planned as needed)."""
        while True:
            for seg in self.segments:
                if seg.start <= batch < seg.end:
                    return seg
            last = self.segments[-1]
            plan = plan_pass(self.index, self.layout, last.plan.number + 1)
            if plan.per_rank == 0:
                raise ValueError(too_small(self.index, self.layout))
            self.segments = [last, Segment(self._mine(plan), last.end, last.end, None)]
            _describe(self.segments[-1], self.index)

    def epoch_at(self, batch: int) -> Epoch:
        """The epoch that run batch ``batch`` is in (or begins)."""
        seg = self.segment_at(batch)
        cap = self.epoch_batches
        first = seg.anchor + ((batch - seg.anchor) // cap) * cap if cap else seg.anchor
        stop = min(seg.end, first + cap) if cap else seg.end
        return Epoch(seg, first, batch, stop)

    # ---- checkpoints ---------------------------------------------------------------------
    def state(self, trained: int) -> dict:
        """What a checkpoint keeps, at ``trained`` run batches (an optimizer-step boundary)."""
        seg = self.segment_at(trained)
        return {
            "version": STATE_VERSION, "data": self.index.digest(), "layout": asdict(self.layout),
            "pass": seg.plan.number, "start": seg.start, "anchor": seg.anchor,
            "done": pack_mask(seg.done, self.index), "trained": trained,
            "epoch_first": self.epoch_at(trained).first,
        }

    @classmethod
    def resume(cls, index: ShardIndex, layout: Layout, epoch_batches: int | None, state: dict | None,
               trained: int, rank: int | None = None) -> TrainSchedule:
        """The schedule of a run at ``trained`` run batches, from a checkpoint's ``state``
        (None: a fresh run, or a checkpoint of an omnitrain without stream state)."""
        if not state or state.get("version") != STATE_VERSION:
            if trained:
                log.warning("the checkpoint has no data-stream position (saved by an earlier omnitrain): "
                            "training continues with a new pass over the data")
            return cls.fresh(index, layout, epoch_batches, 0, trained, rank)
        if state["data"] != index.digest():
            log.warning("data.train_shards (their list, counts or lengths) changed since the checkpoint: "
                        "training continues with a new pass over the data")
            return cls.fresh(index, layout, epoch_batches, state["pass"] + 1, trained, rank)
        done = unpack_mask(state["done"], index)
        old = layout_from(state["layout"])
        if old == layout:
            plan = plan_pass(index, layout, state["pass"], done)
            return cls(index, layout, epoch_batches, Segment(plan, state["start"], state["anchor"], done), rank)
        plan = plan_pass(index, old, state["pass"], done)
        position = trained - state["start"]
        if position >= plan.per_rank:
            return cls.fresh(index, layout, epoch_batches, state["pass"] + 1, trained, rank)
        done = np.zeros(index.total, bool) if done is None else done.copy()
        done[plan.done_by(position)] = True
        log.warning("the run resumes with another layout (%s -> %s): the %d samples of pass %d not yet "
                    "trained on are planned again for it", _shape(old), _shape(layout), int((~done).sum()),
                    state["pass"])
        new = plan_pass(index, layout, state["pass"], done)
        return cls(index, layout, epoch_batches, Segment(new, trained, state.get("epoch_first", trained), done), rank)

    @classmethod
    def fresh(cls, index: ShardIndex, layout: Layout, epoch_batches: int | None, number: int,
              start: int, rank: int | None = None) -> TrainSchedule:
        plan = plan_pass(index, layout, number)
        if plan.per_rank == 0:
            raise ValueError(too_small(index, layout))
        return cls(index, layout, epoch_batches, Segment(plan, start, start, None), rank)


def layout_from(saved: dict) -> Layout:
    return Layout(saved["seed"], saved["world"], saved["workers"], Batching(**saved["batching"]), saved["step"])


def pack_mask(mask: np.ndarray | None, index: ShardIndex) -> dict[str, bytes] | None:
    """A done-mask as bits per shard URL (a checkpoint keeps ~1 bit per sample)."""
    if mask is None:
        return None
    o = index.offsets
    return {url: np.packbits(mask[o[i]:o[i + 1]]).tobytes() for i, url in enumerate(index.urls)}


def unpack_mask(packed: dict[str, bytes] | None, index: ShardIndex) -> np.ndarray | None:
    if packed is None:
        return None
    parts = [np.unpackbits(np.frombuffer(packed[u], np.uint8), count=n).astype(bool) if u in packed
             else np.zeros(n, bool) for u, n in zip(index.urls, index.counts)]
    return np.concatenate(parts)


def too_small(index: ShardIndex, layout: Layout) -> str:
    return (f"data.train_shards hold {index.total} samples: a pass over them plans no batch for "
            f"{layout.world} rank(s) x {layout.workers} loader worker(s); check the shards")


def _shape(layout: Layout) -> str:
    b = layout.batching
    size = f"batch_size={b.batch_size}" if b.mode == "samples" else f"{b.rows}x{b.row_length} tokens"
    return f"{layout.world} rank(s) x {layout.workers} worker(s), {size}, seed {layout.seed}"


def _describe(seg: Segment, index: ShardIndex) -> None:
    """The pass's line in the log, said once per rank (loader workers plan it too)."""
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        return
    p = seg.plan
    log.warning("data: pass %d: %d of %d samples over %s: %d batches per rank; %d left out, %d repeated to "
             "even out the ranks", p.number, p.samples, index.total, _shape(p.layout), p.per_rank,
             p.left_out, p.repeated)
