"""``strategy=auto``: Lightning picks (one device, or DDP when launched on several)."""

from __future__ import annotations

from dataclasses import dataclass

from omnitrain.parallel.base import Strategy, register_strategy


@dataclass
class AutoOptions:
    pass


@register_strategy
class AutoStrategy(Strategy):
    name = "auto"
    Options = AutoOptions
