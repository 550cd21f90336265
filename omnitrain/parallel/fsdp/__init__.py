"""torch FSDP: the strategy, its CPU-capable Lightning strategy, and the reader of its
sharded (torch.distributed.checkpoint) folders."""

from omnitrain.checkpoints import register_reader
from omnitrain.parallel.fsdp.checkpoint import FSDPShardedReader
from omnitrain.parallel.fsdp.strategy import FSDPOptions, FSDPStrategy

register_reader(FSDPShardedReader)

__all__ = ["FSDPOptions", "FSDPShardedReader", "FSDPStrategy"]
