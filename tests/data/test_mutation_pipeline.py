"""The pipeline's small pieces, fast (no shards): world size and rank, the training layout,
the validation plan, and the collate function handed to loader workers (issue 26)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch
import torch.distributed as dist

from omnitrain.data.pass_plan import Batching, Layout, plan_pass
from omnitrain.data.pipeline import (
    Collate,
    make_pipeline,
    split_index,
    train_layout,
    validation_plan,
    world_rank,
    world_size,
)
from omnitrain.data.sample_lengths import lengths_key
from omnitrain.data.shard_index import ShardIndex
from omnitrain.data.skips import SKIPS
from omnitrain.run_config import compose_config
from tests.data.test_mutation_collate import ex
from tests.helpers import one_process_group


@pytest.fixture(scope="module")
def cfg():
    return compose_config(["recipe=smoke", "data.num_workers=3", "seed=7"])


@pytest.fixture
def before_dist_starts(monkeypatch):
    """In-process DeepSpeed runs earlier in the session leave a process group up: these tests
    see the world as a launcher's environment gives it, before any group starts."""
    monkeypatch.setattr(dist, "is_initialized", lambda: False)


def test_world_comes_from_the_launcher_env_before_dist_starts(monkeypatch, before_dist_starts):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert (world_size(), world_rank()) == (4, 3)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert (world_size(), world_rank()) == (1, 0)


def test_a_started_process_group_beats_the_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    with one_process_group():
        assert (world_size(), world_rank()) == (1, 0)


def test_train_layout_takes_the_given_world_and_workers(cfg, monkeypatch, before_dist_starts):
    monkeypatch.setenv("WORLD_SIZE", "5")
    layout = train_layout(cfg, world=2, workers=0)  # in-process reading: still one slot per rank
    assert (layout.seed, layout.world, layout.workers) == (7, 2, 1)
    assert layout.step == cfg.trainer.accumulate_grad_batches
    layout = train_layout(cfg)  # defaults: the launcher's world, the config's workers
    assert (layout.world, layout.workers) == (5, 3)


def test_validation_plan_splits_over_world_times_workers(cfg, monkeypatch, before_dist_starts):
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


def write_split(folder, counts, lengths_key=None, lengths=None):
    """Stand-in shards (a tar of one dummy member: never read, the counts come from the
    index) and the index.json beside them that ``data pack`` writes: each shard's sample
    count, and optionally its lengths."""
    folder.mkdir()
    entries = []
    for i, n in enumerate(counts):
        with tarfile.open(folder / f"{i}.tar", "w") as tar:
            tar.addfile(tarfile.TarInfo("dummy"), io.BytesIO())
        entry = {"name": f"{i}.tar", "samples": n}
        if lengths is not None:
            entry.update(lengths_key=lengths_key, lengths=lengths[i])
        entries.append(entry)
    (folder / "index.json").write_text(json.dumps({"shards": entries}))
    return str(folder)


TRAIN_LENGTHS = [[5, 6, 7], [8, 9]]


@pytest.fixture
def splits(tmp_path, monkeypatch):
    """Overrides naming a train split of 3 + 2 samples and a val split of 10, both
    indexed with lengths for the smoke recipe's tokenizer and encoders."""
    monkeypatch.setenv("OMNITRAIN_CACHE", str(tmp_path / "cache"))  # no user cache read or written
    key = lengths_key(compose_config(["recipe=smoke"]))
    train = write_split(tmp_path / "train", [3, 2], key, TRAIN_LENGTHS)
    val = write_split(tmp_path / "val", [10], key, [list(range(1, 11))])
    return ["recipe=smoke", f"data.train_shards={train}", f"data.val_shards={val}", "data.num_workers=3", "seed=7"]


TOKENS = ["data.batching=tokens", "data.pack_length=64", "data.max_tokens=64"]


def test_token_batching_takes_each_training_samples_length_from_the_index(splits):
    """Token batching plans from every training sample's length, in global-id order."""
    index = split_index(compose_config(splits + TOKENS), "train")
    assert index.counts == (3, 2) and index.lengths.tolist() == [5, 6, 7, 8, 9]


def test_validation_takes_no_lengths_even_with_token_batching(splits):
    """Validation batches by samples: it must not load (or, lacking them, measure) lengths."""
    index = split_index(compose_config(splits + TOKENS), "val")
    assert index.counts == (10,) and index.lengths is None


def test_sample_batching_takes_no_lengths(splits):
    """Sample batching never needs lengths: none are loaded or measured for training."""
    index = split_index(compose_config(splits), "train")
    assert index.counts == (3, 2) and index.lengths is None


def test_a_split_of_one_sample_is_accepted(tmp_path, monkeypatch):
    """Only an empty split is refused: one sample is enough."""
    monkeypatch.setenv("OMNITRAIN_CACHE", str(tmp_path / "cache"))
    val = write_split(tmp_path / "val", [1])
    index = split_index(compose_config(["recipe=smoke", f"data.val_shards={val}"]), "val")
    assert index.counts == (1,) and index.total == 1


def test_make_pipeline_train_is_the_seeded_first_pass_read_in_process(splits):
    """Training's stream is pass 0, planned with the run's seed and batching for one
    in-process reader (not the config's 3 loader workers)."""
    cfg = compose_config(splits)
    stream = make_pipeline(cfg, "train", 9, world=2, rank=1)
    batching = Batching("samples", 4, 4, 0, 64, 16, 2048)  # smoke: batch 4, shuffle_buffer 16; schema defaults
    layout = Layout(7, 2, 1, batching, int(cfg.trainer.accumulate_grad_batches))
    assert stream.plan.number == 0 and stream.plan.layout == layout
    assert stream.plan.batches == plan_pass(stream.index, layout, 0).batches
    assert (stream.rank, stream.start, stream.stop, len(stream)) == (1, 0, 1, 1)


def test_make_pipeline_val_reads_file_order_split_over_ranks(splits):
    """Validation's stream: the 10 samples in file order, ranks 0 and 1 taking samples 0-4
    and 5-9 in batches of 4 (one in-process reader, no shuffling)."""
    stream = make_pipeline(compose_config(splits), "val", 9, world=2, rank=1)
    assert stream.plan.layout.workers == 1 and stream.plan.layout.seed == 0
    assert [[b.ids for b in slot] for slot in stream.plan.batches] == [[(0, 1, 2, 3), (4,)], [(5, 6, 7, 8), (9,)]]
    assert [(j, b.ids) for j, b in stream.batches()] == [(0, (5, 6, 7, 8)), (1, (9,))]
