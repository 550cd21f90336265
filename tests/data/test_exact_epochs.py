"""An epoch is one pass: every sample at most once, split over ranks x loader workers,
every rank with the same number of batches, a new order each pass, short epochs that
continue the pass, and resumes (also with other workers or ranks) that finish it exactly.

Ranks and workers are simulated in-process here (the plan is a pure function of the data
and the layout, and a rank's main-process stream yields what its loader's round-robin
over workers yields, checked with real workers at the end); real runs are in
tests/training/test_data_log.py.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from omnitrain.data.pass_plan import Batching, Layout, plan_pass
from omnitrain.data.pipeline import Collate
from omnitrain.data.planned_stream import PlannedStream
from omnitrain.data.sample_lengths import LengthMeter
from omnitrain.data.shard_index import load_index
from omnitrain.data.train_schedule import TrainSchedule
from omnitrain.run_config import compose_config
from tests.data.uneven import SIZES, write_uneven
from tests.helpers import smoke_overrides

TOTAL = sum(SIZES)
BATCH = 4
TOKENS = Batching("tokens", BATCH, rows=2, row_length=256, buffer=8, window=16, max_tokens=256)
SAMPLES = Batching("samples", BATCH, window=16)


@pytest.fixture(scope="module")
def uneven(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("uneven")
    cfg = compose_config(smoke_overrides(demo_dir, out / "run", "data.max_tokens=256"))
    shards = write_uneven(demo_dir, out, measure=LengthMeter(cfg))
    index = load_index([str(s) for s in shards], lengths_key=LengthMeter(cfg).key)
    return cfg, shards, index


def rank_order(plan, rank):
    """(rank position, batch) as the rank's loader yields them (round-robin over workers)."""
    w = plan.layout.workers
    return [(j, plan.batches[plan.slot(rank, j % w)][j // w]) for j in range(plan.per_rank)]


def seen(plan, world):
    """Sample ids trained on in a pass (repeats apart) and the repeats, over all ranks."""
    ids, repeats = Counter(), Counter()
    for rank in range(world):
        for _, b in rank_order(plan, rank):
            (repeats if b.repeat else ids).update(b.ids)
    return ids, repeats


@pytest.mark.parametrize("batching", [SAMPLES, TOKENS], ids=["samples", "tokens"])
@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_pass_holds_every_sample_at_most_once(uneven, world, workers, batching):
    _, _, index = uneven
    layout = Layout(7, world, max(1, workers), batching)
    plan = plan_pass(index, layout, 0)
    ids, repeats = seen(plan, world)
    assert max(ids.values()) == 1  # no sample twice
    assert len({len(rank_order(plan, r)) for r in range(world)}) == 1 and plan.per_rank > 0
    assert len(ids) == TOTAL and plan.left_out == 0  # every sample
    # at most one repeated batch per slot evens out the ranks
    assert all(sum(b.repeat for b in slot) <= 1 for slot in plan.batches)
    assert sum(repeats.values()) == plan.repeated
    if batching.mode == "samples":  # full batches but a slot's last
        for slot in plan.batches:
            real = [b for b in slot if not b.repeat]
            assert all(len(b.ids) == BATCH for b in real[:-1]) and 0 < len(real[-1].ids) <= BATCH
    else:
        lengths = index.lengths
        assert all(sum(lengths[b.ids[i]] for i in row) <= batching.row_length
                   for slot in plan.batches for b in slot for row in b.rows)
        assert all(len(b.rows) <= batching.rows for slot in plan.batches for b in slot)


def test_each_pass_has_its_own_order_and_a_seed_repeats_it(uneven):
    _, _, index = uneven
    layout = Layout(7, 1, 2, SAMPLES)
    order = [[i for _, b in rank_order(plan_pass(index, layout, n), 0) for i in b.ids] for n in (0, 1)]
    assert order[0] != order[1] and sorted(order[0]) != order[0]
    again = [i for _, b in rank_order(plan_pass(index, layout, 0), 0) for i in b.ids]
    assert again == order[0]
    other_seed = [i for _, b in rank_order(plan_pass(index, Layout(8, 1, 2, SAMPLES), 0), 0) for i in b.ids]
    assert other_seed != order[0]


@pytest.mark.parametrize("batching", [SAMPLES, TOKENS], ids=["samples", "tokens"])
def test_capped_epochs_continue_the_pass(uneven, batching):
    _, _, index = uneven
    layout = Layout(7, 1, 2, batching)
    schedule = TrainSchedule.fresh(index, layout, 3, 0, 0)
    first = schedule.segment_at(0).plan
    epochs, at = [], 0
    while len(epochs) < 40 and (not epochs or epochs[-1].segment.plan.number == 0):
        epoch = schedule.epoch_at(at)
        assert epoch.first == at and 0 < epoch.length <= 3
        epochs.append(epoch)
        at = epoch.stop
    pass0 = [e for e in epochs if e.segment.plan.number == 0]
    assert sum(e.length for e in pass0) == first.per_rank  # the pass, never restarted
    assert epochs[-1].segment.plan.number == 1 and epochs[-1].first == first.per_rank


@pytest.mark.parametrize("old,new", [((1, 2), (1, 1)), ((1, 1), (1, 2)), ((2, 2), (1, 1)), ((1, 2), (2, 2)),
                                     ((2, 1), (2, 2))])
@pytest.mark.parametrize("batching", [SAMPLES, TOKENS], ids=["samples", "tokens"])
def test_a_resume_with_other_ranks_or_workers_finishes_the_pass_exactly(uneven, old, new, batching):
    _, _, index = uneven
    before = TrainSchedule.fresh(index, Layout(7, *old, batching), None, 0, 0)
    plan = before.segment_at(0).plan
    at = plan.per_rank // 2 + 1  # mid-pass
    state = before.state(at)
    trained = Counter(int(i) for i in plan.done_by(at - 0))
    after = TrainSchedule.resume(index, Layout(7, *new, batching), None, state, at)
    seg = after.segment_at(at)
    assert seg.start == at and seg.plan.number == 0
    rest, _ = seen(seg.plan, new[0])
    union = trained + rest
    assert max(union.values()) == 1 and len(union) == TOTAL  # none twice, none lost


def test_a_resume_with_the_same_layout_continues_batch_for_batch(uneven):
    _, _, index = uneven
    layout = Layout(7, 2, 2, SAMPLES)
    run = TrainSchedule.fresh(index, layout, 4, 0, 0)
    resumed = TrainSchedule.resume(index, layout, 4, run.state(6), 6)
    for at in (6, 7, 8, 15, 40):
        a, b = run.epoch_at(at), resumed.epoch_at(at)
        assert (a.first, a.stop, a.segment.plan.number) == (b.first, b.stop, b.segment.plan.number)
        assert rank_order(a.segment.plan, 1) == rank_order(b.segment.plan, 1)


def test_changed_data_starts_a_new_pass(uneven, tmp_path):
    _, shards, index = uneven
    run = TrainSchedule.fresh(index, Layout(7, 1, 1, SAMPLES), None, 0, 0)
    fewer = load_index([str(s) for s in shards[:-1]])
    resumed = TrainSchedule.resume(fewer, Layout(7, 1, 1, SAMPLES), None, run.state(3), 3)
    assert resumed.segment_at(3).plan.number == 1


def test_loader_workers_deliver_the_rank_order(uneven):
    """Batch j of an epoch comes from worker j % workers (the DataLoader's round-robin),
    the order the in-process simulation above assumes; also for an epoch resumed inside."""
    cfg, _, index = uneven
    plan = plan_pass(index, Layout(7, 1, 2, SAMPLES), 0)
    collate = Collate(256)
    whole = PlannedStream(cfg, index, plan, 0, 0, plan.per_rank, plan.per_rank, collate)
    expected = [b.keys for b in whole]
    for start in (0, 3):
        stream = PlannedStream(cfg, index, plan, 0, start, plan.per_rank, plan.per_rank, collate)
        loader = DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="forkserver")
        got = [b.keys for b in loader]
        assert got == expected[start:]
    planned = [[index.urls[int(np.searchsorted(index.offsets, i, side="right")) - 1] for i in b.ids]
               for _, b in rank_order(plan, 0)]
    assert [[k.rsplit(":", 1)[0] for k in keys] for keys in expected] == planned


@pytest.mark.parametrize("batching", [SAMPLES, TOKENS], ids=["samples", "tokens"])
def test_passes_and_capped_epochs_hold_whole_optimizer_steps(uneven, batching):
    """With accumulate_grad_batches=3 every epoch ends on a step boundary (DeepSpeed counts
    micro-batches across epochs: a short last step would shift every later one)."""
    _, _, index = uneven
    layout = Layout(7, 1, 2, batching, step=3)
    plan = plan_pass(index, layout, 0)
    assert plan.per_rank % 3 == 0
    ids, _ = seen(plan, 1)
    assert len(ids) == TOTAL and max(ids.values()) == 1
    schedule = TrainSchedule.fresh(index, layout, 4, 0, 0)  # a cap of 4 becomes 6
    at = 0
    for _ in range(6):
        epoch = schedule.epoch_at(at)
        assert epoch.length % 3 == 0 and epoch.length <= 6
        at = epoch.stop
