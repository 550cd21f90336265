"""A single-file Lightning checkpoint (DDP, one device, FSDP with a full state dict)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from omnitrain.checkpoints.base import Sink, TensorSpec, config_from, export_dtype, model_name
from omnitrain.checkpoints.safe_load import load_file


class LightningFileReader:
    describes = "a Lightning .ckpt file"
    kind = "file"  # the strategy family that wrote (and can resume) it
    """Memory-maps the file, so only the tensor being written is read into memory."""

    @staticmethod
    def matches(path: Path) -> bool:
        return path.is_file()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @cached_property
    def _ckpt(self) -> dict:
        return load_file(self.path)

    def verify(self) -> None:
        self._ckpt  # noqa: B018  (reading it is the check)

    @property
    def step(self) -> int | None:
        return self._ckpt.get("global_step")

    def config(self) -> DictConfig:
        return config_from(self._ckpt, self.path)

    def _state(self) -> dict[str, torch.Tensor]:
        """Model tensors; a tied weight (one storage, two names) under its first name."""
        out, seen = {}, set()
        for key, tensor in self._ckpt.get("state_dict", {}).items():
            name = model_name(key, "model.")
            where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if name is None or where in seen:
                continue
            seen.add(where)
            out[name] = tensor
        return out

    def tensors(self) -> dict[str, TensorSpec]:
        return {n: TensorSpec(tuple(t.shape), export_dtype(t.dtype)) for n, t in self._state().items()}

    def stream(self, sink: Sink) -> None:
        for name, tensor in self._state().items():
            sink(name, 0, tensor.to(export_dtype(tensor.dtype)).reshape(-1))
