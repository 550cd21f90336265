"""The pipeline's small pieces, fast (no shards): world size and rank, the training layout,
the validation plan, and the collate function handed to loader workers (issue 26)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from omnitrain.data.pipeline import Collate, train_layout, validation_plan, world_rank, world_size
from omnitrain.data.shard_index import ShardIndex
from omnitrain.data.skips import SKIPS
from omnitrain.run_config import compose_config
from tests.data.test_mutation_collate import ex


@pytest.fixture(scope="module")
def cfg():
    return compose_config(["recipe=smoke", "data.num_workers=3", "seed=7"])


def test_world_comes_from_the_launcher_env_before_dist_starts(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert (world_size(), world_rank()) == (4, 3)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert (world_size(), world_rank()) == (1, 0)


def test_a_started_process_group_beats_the_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert (world_size(), world_rank()) == (1, 0)
    finally:
        dist.destroy_process_group()


def test_train_layout_takes_the_given_world_and_workers(cfg, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "5")
    layout = train_layout(cfg, world=2, workers=0)  # in-process reading: still one slot per rank
    assert (layout.seed, layout.world, layout.workers) == (7, 2, 1)
    assert layout.step == cfg.trainer.accumulate_grad_batches
    layout = train_layout(cfg)  # defaults: the launcher's world, the config's workers
    assert (layout.world, layout.workers) == (5, 3)


def test_validation_plan_splits_over_world_times_workers(cfg, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    index = ShardIndex(("a.tar",), (10,))
    plan = validation_plan(cfg, index, 0, world=2)
    assert (plan.layout.world, plan.layout.workers) == (2, 1)
    assert sorted(i for slot in plan.batches for b in slot if not b.repeat for i in b.ids) == list(range(10))
    assert validation_plan(cfg, index, 2).layout.world == 3


def test_collate_hands_the_drained_skip_counts_to_the_batch():
    SKIPS.drain()
    SKIPS.add("MediaError", "s1", "bad wav")
    batch = Collate(pad_id=9)([ex("t1", [1, 2]), ex("t2", [3])])
    assert batch.input_ids.tolist() == [[1, 2], [3, 9]] and batch.skipped == {"MediaError": 1}
    assert SKIPS.drain() == {}
    assert torch.equal(Collate(9, pack_length=3)([ex("t1", [1, 2]), ex("t2", [3])]).input_ids,
                       torch.tensor([[1, 2, 3]]))
