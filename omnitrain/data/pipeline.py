"""The streaming pipeline: shards -> samples -> Examples -> Batches, as a list of stages.

Training resamples shards per rank and worker (seeded, so runs are reproducible) and
fixes the epoch length up front, so every rank takes the same number of steps.
Validation cycles through a fixed share of the samples per rank and worker, so every
rank runs the same number of validation batches and together they cover every sample. Every stage is a
module-level object, so the pipeline pickles into forkserver workers.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
from collections.abc import Iterator

import webdataset as wds
from torch.utils.data import IterableDataset

from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch
from omnitrain.data.budget import TokenBudgetBatches
from omnitrain.data.collate import collate
from omnitrain.data.sample_builder import Example, SampleBuilder, SampleError
from omnitrain.data.shards import ShardError, count_samples, listed, resolve_shards
from omnitrain.data.skips import SKIPS, on_shard_error
from omnitrain.plugin_loading import load_plugins


class _Members:
    """Looks up a sample's members by name, with an error that names what is missing."""

    def __init__(self, sample: dict, key: str) -> None:
        self.sample, self.key = sample, key

    def __call__(self, name: str) -> bytes:
        if name not in self.sample:
            present = sorted(k for k in self.sample if not k.startswith("__"))
            raise SampleError(f"sample {self.key}: member '{name}' is missing (has {present})")
        return self.sample[name]


class BuildExamples:
    """Stage: raw tar samples -> Examples; a sample that fails is skipped and counted."""

    def __init__(self, cfg: RunConfig, max_failures: int = 1000) -> None:
        self.cfg = cfg
        self.max_failures = max_failures
        self._builder: SampleBuilder | None = None

    @property
    def builder(self) -> SampleBuilder:
        if self._builder is None:  # built in the worker process, after its plugins load
            load_plugins(list(self.cfg.plugins))
            self._builder = SampleBuilder.from_config(self.cfg)
        return self._builder

    def __call__(self, samples: Iterator[dict]) -> Iterator[Example]:
        failures = 0
        for sample in samples:
            key = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
            try:
                if "json" not in sample:
                    raise SampleError(f"sample {key} has no 'json' member (the conversation)")
                conversation = json.loads(sample["json"])
                example = self.builder.build(conversation, _Members(sample, key), key)
            except Exception as exc:  # a bad sample never stops training...
                SKIPS.add(type(exc).__name__, key, exc)
                failures += 1
                if failures >= self.max_failures:  # ...but a stream of nothing but bad ones does
                    raise SampleError(
                        f"{failures} samples in a row could not be used (last: {key}: {exc}); "
                        "the data or the config is wrong, not a few samples"
                    ) from exc
                continue
            failures = 0
            yield example

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "max_failures": self.max_failures, "_builder": None}


class Collate:
    def __init__(self, pad_id: int, pack_length: int | None = None) -> None:
        self.pad_id, self.pack_length = pad_id, pack_length

    def __call__(self, examples: list[Example], rows: list[list[int]] | None = None) -> Batch:
        return collate(examples, self.pad_id, skipped=SKIPS.drain(), pack_length=self.pack_length, rows=rows)


def _train_batches(cfg: RunConfig, pad_id: int):
    data = cfg.data
    collate_fn = Collate(pad_id, data.pack_length)
    if data.batching == "tokens":
        return TokenBudgetBatches(data.rows_per_batch, data.pack_length, data.budget_buffer, collate_fn)
    return wds.batched(data.batch_size, collation_fn=collate_fn, partial=False)


class SizedPipeline(IterableDataset):
    """A fixed-length epoch with a ``__len__`` (for progress bars); picklable, unlike
    ``DataPipeline.with_length``."""

    def __init__(self, pipeline: wds.DataPipeline, length: int) -> None:
        self.pipeline, self.length = pipeline, length

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.pipeline)

    def __len__(self) -> int:
        return self.length


class TrainEpochs(SizedPipeline):
    """Training epochs whose content is a function of the epoch number alone, so a run
    resumed at global batch ``start_batch`` sees exactly the batches an uninterrupted
    run would have seen from there (a resumed loss curve continues the same curve).

    Every stage with an ``epoch`` counter (webdataset's ``ResampledShards`` and
    ``detshuffle``, seeded by seed, rank/worker and epoch) is set to the epoch being
    read instead of counting iterations from 0 in a fresh process. Batch i of an epoch
    is the (i // W)-th batch of worker *role* i % W, and the DataLoader takes batches
    round-robin starting at worker 0; so after skipping k batches, worker w plays role
    (w + k) % W (that role's shard seed) and drops that role's first batches. Dropped
    batches are still decoded (exact, also when samples are skipped as bad); resuming
    at an epoch boundary drops none.
    """

    def __init__(self, pipeline: wds.DataPipeline, length: int, start_batch: int = 0) -> None:
        super().__init__(pipeline, length)
        self.start_epoch, self.skip = divmod(max(0, start_batch), length)
        self._iterations = 0

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.start_epoch + self._iterations
        skip = self.skip if self._iterations == 0 else 0
        self._iterations += 1
        rank, _, worker, workers = wds.utils.pytorch_worker_info()
        role = (worker + skip) % workers
        for stage in self.pipeline.pipeline:
            if hasattr(stage, "epoch"):
                stage.epoch = epoch - 1  # each stage increments it before use
            if isinstance(stage, wds.ResampledShards):
                stage.worker_seed = functools.partial(role_seed, rank, role)
        return itertools.islice(iter(self.pipeline), len(range(role, skip, workers)), None)


def role_seed(rank: int, role: int) -> int:
    """webdataset's per-worker shard seed (``pytorch_worker_seed``), for a worker role."""
    return rank * 1000 + role


def train_epoch(cfg: RunConfig, *stages) -> tuple[wds.DataPipeline, int]:
    """Endless, seeded, shuffled samples of ``data.train_shards`` through ``stages``
    (which batch them), cut into epochs of ``data.epoch_batches`` shared by the loader
    workers. Returns the pipeline and the batches one epoch yields over all workers."""
    data = cfg.data
    urls = resolve_shards(data.train_shards, "data.train_shards")
    workers = max(1, data.num_workers)
    per_worker = math.ceil(data.epoch_batches / workers)
    watch = SamplesComeOut(urls)
    pipeline = wds.DataPipeline(
        wds.ResampledShards(urls, seed=cfg.seed, deterministic=True),
        watch.shards,
        wds.tarfile_to_samples(handler=on_shard_error),
        watch.samples,
        wds.detshuffle(data.shuffle_buffer, initial=min(data.shuffle_buffer, 64), seed=cfg.seed),
        *stages,
    ).with_epoch(per_worker)
    return pipeline, per_worker * workers


class SamplesComeOut:
    """Training resamples shards forever; if they yield no sample at all (member-less or
    unreadable tars) it would spin at 100% CPU. Raise instead, naming the shards."""

    def __init__(self, urls: list[str]) -> None:
        self.urls, self.limit, self.since = urls, 2 * len(urls) + 2, 0

    def shards(self, source: Iterator[dict]) -> Iterator[dict]:
        for shard in source:
            self.since += 1
            if self.since > self.limit:
                raise ShardError(f"data.train_shards: {self.since - 1} shards read in a row gave no sample "
                                 f"({listed(self.urls)}); they hold no readable samples. Check them with `tar tf`, or "
                                 "pack them again (`omnitrain data pack`)")
            yield shard

    def samples(self, source: Iterator[dict]) -> Iterator[dict]:
        for sample in source:
            self.since = 0
            yield sample


def make_pipeline(cfg: RunConfig, split: str, pad_id: int, start_batch: int = 0) -> IterableDataset:
    """The ``split`` stream; for training, ``start_batch`` is the number of batches per
    rank already trained on (resume), see ``TrainEpochs``."""
    data = cfg.data
    if split == "train":
        pipeline, batches = train_epoch(cfg, BuildExamples(cfg), _train_batches(cfg, pad_id))
        return TrainEpochs(pipeline, batches, start_batch)
    urls = resolve_shards(data.val_shards, "data.val_shards")
    total = sum(count_samples(u) for u in urls)
    world = world_size()
    workers = max(1, data.val_num_workers)
    batches = max(1, math.ceil(total / (world * data.batch_size)))
    per_worker = math.ceil(batches / workers)
    stages = [
        CyclicShare(urls, total),
        BuildExamples(cfg, max_failures=2 * total + 10),
        wds.batched(data.batch_size, collation_fn=Collate(pad_id, data.pack_length), partial=False),
    ]
    return SizedPipeline(wds.DataPipeline(*stages).with_epoch(per_worker), per_worker * workers)


def world_size() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


class CyclicShare(IterableDataset):
    """This rank's and worker's share of the validation samples, repeated forever.

    Sample i of each pass over the shards goes to slot i % slots (slots = ranks x
    workers), so together the slots cover every sample, and since the stream never
    runs dry every rank yields the same number of batches (a rank that ran out early
    would leave the others waiting in a collective op). When there are more slots than
    samples, slot s reuses sample s % total.
    """

    def __init__(self, urls: list[str], total: int) -> None:
        self.urls, self.total = urls, total

    def __iter__(self) -> Iterator[dict]:
        if self.total == 0:
            raise SampleError(f"data.val_shards hold no samples ({self.urls[:3]}...)")
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        slots, slot = world * workers, rank * workers + worker
        read_tars = wds.tarfile_to_samples(handler=on_shard_error)
        while True:
            read = 0
            for i, sample in enumerate(read_tars({"url": u} for u in self.urls)):
                read += 1
                if (i % slots == slot) if slots <= self.total else (i == slot % self.total):
                    yield sample
            if read == 0:
                raise SampleError(f"data.val_shards: no sample could be read from {self.urls[:3]}")
