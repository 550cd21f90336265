"""Read training checkpoints of every strategy: one Lightning file here, and the sharded
formats their strategies bring (``register_reader``). ``open_checkpoint`` picks the reader."""

from __future__ import annotations

from pathlib import Path

from omnitrain.checkpoints.base import CheckpointError, CheckpointReader, TensorSpec
from omnitrain.checkpoints.lightning_file import LightningFileReader
from omnitrain.name_registry import Registry

#: readers by ``kind`` (the strategy family that writes the format), tried in registration order
READERS: Registry[type[CheckpointReader]] = Registry("checkpoint reader")
READERS.add(LightningFileReader.kind, LightningFileReader)

__all__ = ["CheckpointError", "CheckpointReader", "TensorSpec", "open_checkpoint", "READERS", "register_reader"]


def register_reader(reader: type[CheckpointReader]) -> type[CheckpointReader]:
    """Add a reader of a strategy's own format (its ``matches(path)`` recognises it), under its ``kind``."""
    return READERS.add(reader.kind, reader)


def open_checkpoint(path: Path | str) -> CheckpointReader:
    from omnitrain.plugin_loading import load_plugins

    load_plugins()  # strategies register the readers of their formats
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    for reader in READERS.values():
        if reader.matches(path):
            return reader(path)
    formats = "; ".join(r.describes for r in READERS.values())
    raise CheckpointError(f"'{path}' is not a checkpoint omnitrain can read: expected {formats}")
