"""Read training checkpoints of every strategy: one Lightning file, a DeepSpeed ZeRO
folder, or a sharded FSDP folder. ``open_checkpoint`` picks the reader."""

from __future__ import annotations

from pathlib import Path

from omnitrain.checkpoints.base import CheckpointError, CheckpointReader, TensorSpec
from omnitrain.checkpoints.deepspeed_zero import DeepSpeedZeroReader
from omnitrain.checkpoints.fsdp_dcp import FSDPShardedReader
from omnitrain.checkpoints.lightning_file import LightningFileReader

READERS = (LightningFileReader, DeepSpeedZeroReader, FSDPShardedReader)

__all__ = ["CheckpointError", "CheckpointReader", "TensorSpec", "open_checkpoint", "READERS"]


def open_checkpoint(path: Path | str) -> CheckpointReader:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    for reader in READERS:
        if reader.matches(path):
            return reader(path)
    raise CheckpointError(
        f"'{path}' is not a checkpoint omnitrain can read: expected a Lightning .ckpt file, a "
        "DeepSpeed ZeRO folder (with */*_optim_states.pt) or a sharded FSDP folder (with .metadata)"
    )
