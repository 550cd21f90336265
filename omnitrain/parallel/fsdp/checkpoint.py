"""A sharded FSDP checkpoint folder (torch.distributed.checkpoint), as Lightning writes it::

    last.ckpt/.metadata       every tensor's chunks: offsets, sizes, file, byte range
    last.ckpt/__R_0.distcp    rank R's chunks (model and optimizer state)
    last.ckpt/meta.pt         everything else (config, loops, schedulers)

Each chunk is read on its own (one ``torch.load`` of its byte range) and written out,
so memory holds one chunk at a time; optimizer entries are never read.
"""

from __future__ import annotations

import io
import math
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from omnitrain.checkpoints.base import (
    CheckpointError,
    Sink,
    TensorSpec,
    config_from,
    export_dtype,
    model_name,
)
from omnitrain.checkpoints.safe_load import load_file, load_pickle

METADATA_CLASSES = {
    ("torch.distributed.checkpoint.metadata", "*"), ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"), ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"),
    ("pathlib._local", "PosixPath"),  # where Python 3.13 pickles it from
    ("collections", "OrderedDict"),
    *(("torch", str(d).removeprefix("torch.")) for d in (
        torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
        torch.int8, torch.uint8, torch.bool, torch.complex64)),
}
PREFIX = "model.model."  # Lightning's "model" state-dict key, then the LightningModule attribute
META_FILE = "meta.pt"


class FSDPShardedReader:
    describes = "a sharded FSDP folder (with .metadata)"
    kind = "fsdp"  # the strategy family that wrote (and can resume) it
    @staticmethod
    def matches(path: Path) -> bool:
        return path.is_dir() and (path / ".metadata").is_file()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @cached_property
    def _metadata(self):
        """torch.distributed.checkpoint's ``.metadata`` pickle, read with only its own
        classes allowed (torch's reader unpickles anything)."""
        return load_pickle(self.path / ".metadata", METADATA_CLASSES)

    @property
    def world(self) -> int:
        return len(list(self.path.glob("*.distcp")))

    def verify(self) -> None:
        """Read the metadata and Lightning's meta file as data."""
        self._metadata  # noqa: B018
        self.config()

    @property
    def step(self) -> int | None:
        return load_file(self.path / META_FILE).get("global_step")

    def config(self) -> DictConfig:
        meta = self.path / META_FILE
        if not meta.exists():
            raise CheckpointError(f"'{self.path}' has no {META_FILE} (not a Lightning FSDP checkpoint)")
        return config_from(load_file(meta), self.path)

    def _model_entries(self):
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        for key, md in self._metadata.state_dict_metadata.items():
            name = model_name(key, PREFIX)
            if name is not None and isinstance(md, TensorStorageMetadata):
                yield key, name, md

    def tensors(self) -> dict[str, TensorSpec]:
        return {
            name: TensorSpec(tuple(md.size), export_dtype(md.properties.dtype))
            for _, name, md in self._model_entries()
        }

    def stream(self, sink: Sink) -> None:
        from torch.distributed.checkpoint.metadata import MetadataIndex

        storage = self._metadata.storage_data
        for key, name, md in self._model_entries():
            full = tuple(md.size)
            for index, chunk in enumerate(md.chunks):
                info = storage.get(MetadataIndex(key, chunk.offsets, index)) or storage.get(
                    MetadataIndex(key, chunk.offsets))
                if info is None:
                    raise CheckpointError(f"'{self.path}': no storage entry for {key} at {tuple(chunk.offsets)}")
                if info.transform_descriptors:
                    raise CheckpointError(f"'{self.path}': transformed (e.g. compressed) chunks are not supported")
                with open(self.path / info.relative_path, "rb") as f:
                    f.seek(info.offset)
                    data = io.BytesIO(f.read(info.length))
                try:
                    tensor = torch.load(data, map_location="cpu", weights_only=True)
                except Exception as exc:
                    raise CheckpointError(f"'{self.path / info.relative_path}' is corrupt, truncated or "
                                          f"holds more than tensors ({exc})") from exc
                tensor = tensor.to(export_dtype(tensor.dtype))
                for offset, run in _runs(full, tuple(chunk.offsets), tensor):
                    sink(name, offset, run)


def _runs(full: tuple[int, ...], offsets: tuple[int, ...], chunk: torch.Tensor):
    """(flat offset in the full tensor, 1-D run) for the contiguous runs of a chunk."""
    if not full:
        yield 0, chunk.reshape(-1)
        return
    # trailing dimensions the chunk covers completely form one contiguous block per index
    k = len(full)
    while k > 0 and chunk.shape[k - 1] == full[k - 1] and offsets[k - 1] == 0:
        k -= 1
    if k == 0:
        yield 0, chunk.reshape(-1)
        return
    strides = [math.prod(full[i + 1:]) for i in range(len(full))]
    lead = chunk.shape[:k]
    for idx in _ndindex(lead[:-1]):
        rows = chunk[idx]  # shape (lead[-1], *rest), contiguous along the last lead dim
        start = sum((offsets[i] + idx[i]) * strides[i] for i in range(k - 1)) + offsets[k - 1] * strides[k - 1]
        yield start, rows.reshape(-1)


def _ndindex(shape: tuple[int, ...]):
    if not shape:
        yield ()
        return
    for i in range(shape[0]):
        for rest in _ndindex(shape[1:]):
            yield (i, *rest)
