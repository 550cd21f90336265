"""DeepSpeed ZeRO: the strategy, its generated JSON, its CPU-capable Lightning strategy,
ZeRO-3 construction, and the reader of its checkpoint folders."""

from omnitrain.checkpoints import register_reader
from omnitrain.nn.precision import DATA_GUARDS
from omnitrain.parallel.deepspeed.checkpoint import DeepSpeedZeroReader
from omnitrain.parallel.deepspeed.strategy import DeepSpeedOptions, DeepSpeedStrategy
from omnitrain.parallel.deepspeed.zero_init import zero_init_paused

register_reader(DeepSpeedZeroReader)
if zero_init_paused not in DATA_GUARDS:
    DATA_GUARDS.append(zero_init_paused)

__all__ = ["DeepSpeedOptions", "DeepSpeedStrategy", "DeepSpeedZeroReader"]
