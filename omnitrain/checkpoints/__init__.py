"""Read training checkpoints of every strategy: one Lightning file here, and the sharded
formats their strategies bring (``register_reader``). ``open_checkpoint`` picks the reader."""

from __future__ import annotations

from pathlib import Path

from omnitrain.checkpoints.base import CheckpointError, CheckpointReader, TensorSpec
from omnitrain.checkpoints.lightning_file import LightningFileReader

READERS: list[type] = [LightningFileReader]

__all__ = ["CheckpointError", "CheckpointReader", "TensorSpec", "open_checkpoint", "READERS", "register_reader"]


def register_reader(reader: type) -> type:
    """Add a reader of a strategy's own format (its ``matches(path)`` recognises it)."""
    if reader not in READERS:
        READERS.append(reader)
    return reader


def open_checkpoint(path: Path | str) -> CheckpointReader:
    from omnitrain.plugin_loading import load_plugins

    load_plugins()  # strategies register the readers of their formats
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    for reader in READERS:
        if reader.matches(path):
            return reader(path)
    formats = "; ".join(r.describes for r in READERS)
    raise CheckpointError(f"'{path}' is not a checkpoint omnitrain can read: expected {formats}")
