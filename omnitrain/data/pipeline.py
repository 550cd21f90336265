"""Shards -> Examples -> Batches: building a sample, collating, and the streams of a split.

Training and validation both read a planned pass (``pass_plan``): every sample once,
split over ranks x loader workers, every rank with the same number of batches. Training
shuffles (per pass, seeded) and runs pass after pass (``train_schedule``); validation
reads the samples in file order, each exactly once over all ranks. Every object here
pickles into forkserver workers and rebuilds what it needs there.
"""

from __future__ import annotations

import os

from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch
from omnitrain.data.collate import collate
from omnitrain.data.pass_plan import Batching, Layout, PassPlan, plan_pass, plan_validation
from omnitrain.data.planned_stream import PlannedStream
from omnitrain.data.sample_builder import Example
from omnitrain.data.shard_index import ShardIndex, load_index
from omnitrain.data.shards import ShardError, listed, resolve_shards
from omnitrain.data.skips import SKIPS


class Collate:
    def __init__(self, pad_id: int, pack_length: int | None = None) -> None:
        self.pad_id, self.pack_length = pad_id, pack_length

    def __call__(self, examples: list[Example], rows: list[list[int]] | None = None) -> Batch:
        return collate(examples, self.pad_id, skipped=SKIPS.drain(), pack_length=self.pack_length, rows=rows)


def world_size() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def world_rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def split_index(cfg: RunConfig, split: str) -> ShardIndex:
    """The shards of ``split`` with their counts, and for training with token batching
    each sample's length (measured once if no index has them)."""
    field = f"data.{split}_shards"
    urls = resolve_shards(getattr(cfg.data, f"{split}_shards"), field)
    index = getattr(cfg.data, "index", None)
    if split == "train" and cfg.data.batching == "tokens":
        from omnitrain.data.sample_lengths import LengthMeter, lengths_key

        found = load_index(urls, index, lengths_key(cfg), LengthMeter(cfg))
    else:
        found = load_index(urls, index)
    if found.total == 0:
        raise ShardError(f"{field} hold no samples ({listed(list(urls))}); they hold no readable samples. Check "
                         "them with `tar tf`, or pack them again (`omnitrain data pack`)")
    return found


def train_layout(cfg: RunConfig, world: int | None = None, workers: int | None = None) -> Layout:
    return Layout(int(cfg.seed), world or world_size(), max(1, cfg.data.num_workers if workers is None else workers),
                  Batching.from_config(cfg), int(cfg.trainer.accumulate_grad_batches))


def make_pipeline(cfg: RunConfig, split: str, pad_id: int, *, world: int | None = None,
                  rank: int | None = None) -> PlannedStream:
    """The first pass of ``split`` for ``rank`` of ``world`` (default: this process's), read
    in this process (tests and tools; training goes through ``OmniDataModule``, which also
    resumes and continues passes)."""
    world = world_size() if world is None else world
    rank = world_rank() if rank is None else rank
    index = split_index(cfg, split)
    collate_fn = Collate(pad_id, cfg.data.pack_length)
    if split == "train":
        plan = plan_pass(index, train_layout(cfg, world=world, workers=1), 0)
    else:
        plan = validation_plan(cfg, index, 1, world)
    return PlannedStream(cfg, index, plan, rank, 0, plan.per_rank, plan.per_rank, collate_fn)


def validation_plan(cfg: RunConfig, index: ShardIndex, workers: int, world: int | None = None) -> PassPlan:
    return plan_validation(index, world or world_size(), max(1, workers), int(cfg.data.batch_size))
