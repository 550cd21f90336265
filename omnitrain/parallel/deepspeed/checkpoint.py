"""A DeepSpeed ZeRO checkpoint folder (stages 1-3), as Lightning's DeepSpeed strategy writes it::

    last.ckpt/latest                                  -> "checkpoint" (the tag)
    last.ckpt/checkpoint/mp_rank_00_model_states.pt   stage 1/2: buffers, frozen params, client state
    last.ckpt/checkpoint/zero_pp_rank_R_mp_rank_00_model_states.pt   stage 3: one per rank
    last.ckpt/checkpoint/zero_pp_rank_R_mp_rank_00_optim_states.pt   fp32 master partitions + Adam state

The fp32 master weights are read from one rank's optimizer file at a time, memory-
mapped, touching only the fp32 partition (not the Adam moments), and every piece goes
straight to the sink; so peak memory is about one shard's fp32 partition, never the
whole model (DeepSpeed's own ``zero_to_fp32`` loads every shard at once). The layout
rules follow ``deepspeed/utils/zero_to_fp32.py`` of the pinned DeepSpeed (0.19.8):

- stage 1/2: per parameter group, rank r holds elements [r*P, (r+1)*P) of the group's
  flat vector, in which parameters lie back to back (plus alignment padding);
- stage 3: every parameter is split on its own: rank r holds elements
  [r*ceil(n/W), (r+1)*ceil(n/W)) of it, parameters back to back in the rank's flat groups.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Iterator
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
from omnitrain.checkpoints.safe_load import load_file

PREFIX = "model."  # the LightningModule's attribute holding the OmniModel


def _rank_of(path: Path) -> int:
    match = re.search(r"zero_pp_rank_(\d+)_", path.name)
    return int(match.group(1)) if match else 0


def allowed_types() -> list[type]:
    """The non-tensor objects DeepSpeed's checkpoint files hold (loaded as data, nothing else)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


def _load(path: Path) -> dict:
    return load_file(path, allowed_types())


def _pieces(flat: list[torch.Tensor], start: int, length: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(offset within the span, slice) covering [start, start+length) of concatenated ``flat``."""
    base, done = 0, 0
    for part in flat:
        n = part.numel()
        lo, hi = max(start, base), min(start + length, base + n)
        if lo < hi:
            yield lo - start, part[lo - base:hi - base]
            done += hi - lo
        base += n
        if base >= start + length:
            break
    if done != length:
        raise CheckpointError(f"ZeRO shard ends early: wanted {length} elements from offset {start}")


class DeepSpeedZeroReader:
    describes = "a DeepSpeed ZeRO folder (with */*_optim_states.pt)"
    kind = "deepspeed"  # the strategy family that wrote (and can resume) it
    @staticmethod
    def matches(path: Path) -> bool:
        return path.is_dir() and any(path.glob("*/*_optim_states.pt"))

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        latest = self.path / "latest"
        tag = latest.read_text().strip() if latest.exists() else "checkpoint"
        self.dir = self.path / tag
        self.optim_files = sorted(self.dir.glob("*_optim_states.pt"), key=_rank_of)
        self.model_files = sorted(self.dir.glob("*_model_states.pt"), key=_rank_of)
        if not self.optim_files or not self.model_files:
            raise CheckpointError(f"'{self.dir}' holds no DeepSpeed model/optimizer state files")

    @cached_property
    def _main(self) -> dict:
        """Rank 0's model states: client state (config, loops), shapes, buffers."""
        return _load(self.model_files[0])

    @property
    def world(self) -> int:
        return len(self.optim_files)

    @cached_property
    def stage(self) -> int:
        return int(self._main["ds_config"]["zero_optimization"]["stage"])

    def verify(self) -> None:
        """Read every rank's files as data (memory-mapped: headers, not the tensors)."""
        for file in self.model_files + self.optim_files:
            _load(file)

    def config(self) -> DictConfig:
        return config_from(self._main, self.path)

    @property
    def step(self) -> int | None:
        return self._main.get("global_step")

    # ---- names and shapes ------------------------------------------------------
    def _aliases(self) -> set[str]:
        return set((self._main.get("shared_params") or {}).keys())

    def _buffers(self) -> dict[str, torch.Tensor]:
        names = set(self._main.get("buffer_names") or [])
        return {k: v for k, v in self._main["module"].items() if k in names}

    def _frozen_shapes(self) -> dict[str, torch.Size]:
        if self._main.get("frozen_param_shapes"):
            return dict(self._main["frozen_param_shapes"])
        # ZeRO-1 records no frozen parameters (DeepSpeed does from stage 2): a frozen weight
        # (optim.freeze, LoRA's base weights) is then only in the module state, whole
        known = {k for group in self._trainable_groups() for k in group} | set(self._main.get("buffer_names") or [])
        return {k: v.shape for k, v in (self._main.get("module") or {}).items() if k not in known}

    def _trainable_groups(self) -> list[dict[str, torch.Size]]:
        return list(self._main["param_shapes"])

    def tensors(self) -> dict[str, TensorSpec]:
        specs: dict[str, TensorSpec] = {}
        aliases = self._aliases()
        for key, tensor in self._buffers().items():
            specs[key] = TensorSpec(tuple(tensor.shape), export_dtype(tensor.dtype))
        for key, shape in self._frozen_shapes().items():
            specs[key] = TensorSpec(tuple(shape), torch.float32)
        for group in self._trainable_groups():
            for key, shape in group.items():
                specs[key] = TensorSpec(tuple(shape), torch.float32)
        return {n: s for k, s in specs.items() if k not in aliases and (n := model_name(k, PREFIX))}

    # ---- streaming -------------------------------------------------------------
    def stream(self, sink: Sink) -> None:
        def emit(key: str, offset: int, piece: torch.Tensor) -> None:
            name = model_name(key, PREFIX)
            if name is not None and key not in aliases:
                sink(name, offset, piece.reshape(-1).to(export_dtype(piece.dtype)))

        aliases = self._aliases()
        for key, tensor in self._buffers().items():
            emit(key, 0, tensor)
        self._stream_frozen(emit)
        osd0 = _load(self.optim_files[0])["optimizer_state_dict"]
        paddings = osd0.get("param_alignment_paddings")
        if max(_as_list(osd0.get("partition_count", self.world))) != self.world:
            raise CheckpointError(
                f"'{self.dir}' should hold {osd0.get('partition_count')} optimizer shards but has "
                f"{self.world}: a rank's files are missing (an interrupted save?)"
            )
        del osd0
        for rank, file in enumerate(self.optim_files):
            osd = _load(file)["optimizer_state_dict"]
            if self.stage <= 2:
                self._stream_zero2_rank(rank, osd["single_partition_of_fp32_groups"], paddings, emit)
            else:
                self._stream_zero3_rank(rank, list(osd["fp32_flat_groups"]), emit)
            del osd
            gc.collect()  # drop the memory map before opening the next shard

    def _stream_frozen(self, emit) -> None:
        shapes = self._frozen_shapes()
        if not shapes:
            return
        if self.stage <= 2:
            fragments = self._main.get("frozen_param_fragments") or {k: self._main["module"][k] for k in shapes}
            for key, tensor in fragments.items():
                emit(key, 0, tensor)
            return
        for rank, file in enumerate(self.model_files):
            fragments = _load(file).get("frozen_param_fragments") or {}
            for key, shape in shapes.items():
                numel = math.prod(shape)
                part = math.ceil(numel / self.world)
                start = rank * part
                if start < numel:
                    emit(key, start, fragments[key].reshape(-1)[: min(part, numel - start)])
            del fragments
            gc.collect()

    def _stream_zero2_rank(self, rank: int, groups: list[torch.Tensor], paddings, emit) -> None:
        for g, (shapes, part) in enumerate(zip(self._trainable_groups(), groups)):
            size = part.numel()
            lo, hi = rank * size, (rank + 1) * size  # this rank's span of the group's flat vector
            offset = 0
            for i, (key, shape) in enumerate(shapes.items()):
                numel = math.prod(shape)
                s, e = max(lo, offset), min(hi, offset + numel)
                if s < e:
                    emit(key, s - offset, part[s - lo:e - lo])
                offset += numel + (paddings[g][i] if paddings is not None else 0)

    def _stream_zero3_rank(self, rank: int, flat: list[torch.Tensor], emit) -> None:
        offset = 0
        for shapes in self._trainable_groups():
            for key, shape in shapes.items():
                numel = math.prod(shape)
                part = math.ceil(numel / self.world)
                start = rank * part
                take = max(0, min(part, numel - start))
                if take:
                    for at, piece in _pieces(flat, offset, take):
                        emit(key, start + at, piece)
                offset += part


def _as_list(value) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]
