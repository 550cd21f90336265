"""What every checkpoint reader offers: the run config, the model tensors' names and
shapes, and a stream of tensor pieces.

Readers are adapter objects, one per on-disk format (Lightning file, DeepSpeed ZeRO
folder, FSDP/torch.distributed.checkpoint folder), so export, resume checks and memory
planning never branch on formats themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from omegaconf import DictConfig, OmegaConf

# sink(name, flat element offset into the full tensor, 1-D piece of it)
Sink = Callable[[str, int, torch.Tensor], None]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class CheckpointReader(Protocol):
    path: Path
    kind: str  # the strategy family that wrote it and can resume it (``Strategy.checkpoint_kind``)

    def verify(self) -> None:
        """Read every file as data: raises ``CheckpointError`` on a corrupt, truncated or
        code-carrying checkpoint before anything else loads it."""

    @property
    def step(self) -> int | None:
        """The global step the checkpoint was saved at."""

    def config(self) -> DictConfig:
        """The run config stored with the checkpoint."""

    def tensors(self) -> dict[str, TensorSpec]:
        """Model tensors (names relative to the model), with export dtypes (fp32 for floats)."""

    def stream(self, sink: Sink) -> None:
        """Call ``sink`` with every piece of every model tensor, holding little at once."""


def config_from(client_state: dict, path: Path) -> DictConfig:
    try:
        return OmegaConf.create(client_state["hyper_parameters"]["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(
            f"'{path}' is not an omnitrain checkpoint (no config in hyper_parameters)"
        ) from exc


def model_name(key: str, prefix: str) -> str | None:
    """``model.thinker.x`` -> ``thinker.x`` for keys under the LightningModule's model."""
    return key[len(prefix):] if key.startswith(prefix) else None


def export_dtype(dtype: torch.dtype) -> torch.dtype:
    """Bundles hold floating tensors in fp32 (the master weights), others as they are."""
    return torch.float32 if dtype.is_floating_point else dtype
