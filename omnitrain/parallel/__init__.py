"""Distribution strategies as objects (``base.Strategy``), registered like plugins: the
built-ins are ``auto``, ``ddp``, ``deepspeed`` (ZeRO 1-3, offload) and ``fsdp``. A new one is
one module with a ``@register_strategy`` class, listed under the ``omnitrain.plugins``
entry points (or named in ``plugins=[...]``), plus its presets in ``configs/strategy/``."""

from omnitrain.parallel.base import (
    STRATEGIES,
    Strategy,
    precision_kind,
    register_strategy,
    registered_strategies,
    strategy_class,
    strategy_for,
    strategy_options,
)
from omnitrain.parallel.world import world_size_of

__all__ = ["STRATEGIES", "Strategy", "precision_kind", "register_strategy", "registered_strategies",
           "strategy_class", "strategy_for", "strategy_options", "world_size_of"]
