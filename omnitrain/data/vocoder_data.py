"""Data for the vocoder stage: (mel, waveform) segments of the spoken replies in shards.

Same shards as the model stages; only each sample's ``speech`` member is read. A
training segment starts at a random frame (seeded), a validation segment at frame 0;
short replies are zero-padded. Bad samples are skipped and counted as everywhere.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import lightning as L
import torch
import torch.nn.functional as F
import webdataset as wds
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from omnitrain.config.typed import RunConfig
from omnitrain.data.media import load_audio
from omnitrain.data.sample_builder import SampleError
from omnitrain.data.shard_index import load_index
from omnitrain.data.shards import resolve_shards
from omnitrain.data.skips import SKIPS, on_shard_error
from omnitrain.features.speech_mel import SpeechMel


def _member(sample: dict, key: str, name: str) -> bytes:
    if name not in sample:
        raise SampleError(f"sample {key}: member '{name}' is missing")
    return sample[name]


class SpeechSegments:
    """Stage: tar samples -> (mel (frames, n_mels), wave (frames * hop,)) segments."""

    def __init__(self, speech: dict, frames: int, random_start: bool, seed: int) -> None:
        self.speech, self.frames, self.random_start, self.seed = speech, frames, random_start, seed

    def __call__(self, samples: Iterator[dict]) -> Iterator[tuple[Tensor, Tensor]]:
        cfg = self.speech
        mel = SpeechMel(cfg)
        rng = random.Random(self.seed)
        length = self.frames * cfg.hop_length
        for sample in samples:
            key = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
            try:
                turns = json.loads(_member(sample, key, "json"))["turns"]
                names = [t["speech"] for t in turns if isinstance(t, dict) and "speech" in t]
                if not names:
                    raise SampleError(f"sample {key} has no spoken reply")
                wave = load_audio(_member(sample, key, names[-1]), cfg.sample_rate, f"sample {key} speech")
            except Exception as exc:
                SKIPS.add(type(exc).__name__, key, exc)
                continue
            spare = wave.numel() - length
            start = rng.randrange(spare // cfg.hop_length + 1) * cfg.hop_length if spare > 0 and self.random_start else 0
            seg = F.pad(wave[start:start + length], (0, max(0, length - wave[start:].numel())))
            yield mel(seg)[: self.frames], seg


def collate_segments(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    return torch.stack([m for m, _ in items]), torch.stack([w for _, w in items])


class SizedPipeline(IterableDataset):
    """A fixed-length epoch with a ``__len__`` (for progress bars); picklable, unlike
    ``DataPipeline.with_length``."""

    def __init__(self, pipeline: wds.DataPipeline, length: int) -> None:
        self.pipeline, self.length = pipeline, length

    def __iter__(self) -> Iterator:
        return iter(self.pipeline)

    def __len__(self) -> int:
        return self.length


def make_vocoder_pipeline(cfg: RunConfig, split: str) -> SizedPipeline:
    """Segments of the spoken replies. Training draws shards with replacement (seeded per
    rank and worker) for ``data.epoch_batches`` batches (default: about one pass): the
    vocoder sees random segments, so exact passes matter less than for the model stages."""
    data, frames = cfg.data, cfg.vocoder_train.segment_frames
    speech = cfg.speech
    urls = resolve_shards(data.train_shards if split == "train" else data.val_shards, f"data.{split}_shards")
    total = load_index(urls, data.index).total
    batch = wds.batched(data.batch_size, collation_fn=collate_segments, partial=False)
    if split == "train":
        workers = max(1, data.num_workers)
        batches = data.epoch_batches or max(1, total // data.batch_size)
        per_worker = -(-batches // workers)
        pipeline = wds.DataPipeline(
            wds.ResampledShards(urls, seed=cfg.seed, deterministic=True),
            wds.tarfile_to_samples(handler=on_shard_error),
            wds.detshuffle(data.shuffle_buffer, seed=cfg.seed),
            SpeechSegments(speech, frames, True, cfg.seed),
            batch,
        ).with_epoch(per_worker)
        return SizedPipeline(pipeline, per_worker * workers)
    batches = max(1, total // data.batch_size)
    stages = [
        wds.SimpleShardList(urls),
        wds.tarfile_to_samples(handler=on_shard_error),
        SpeechSegments(speech, frames, False, cfg.seed),
        batch,
    ]
    return SizedPipeline(wds.DataPipeline(*stages).with_epoch(batches), batches)


class VocoderDataModule(L.LightningDataModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def check(self) -> None:
        resolve_shards(self.cfg.data.train_shards, "data.train_shards")
        if self.cfg.data.val_shards:
            resolve_shards(self.cfg.data.val_shards, "data.val_shards")

    def _loader(self, split: str, workers: int) -> DataLoader:
        return DataLoader(make_vocoder_pipeline(self.cfg, split), batch_size=None, num_workers=workers,
                          multiprocessing_context="forkserver" if workers > 0 else None,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.cfg.data.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", 0) if self.cfg.data.val_shards else []
