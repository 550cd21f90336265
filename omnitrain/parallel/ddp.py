"""``strategy=ddp``: a full model copy per process, gradients all-reduced (NCCL on GPU,
gloo on CPU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnitrain.parallel.base import DEFAULT_TIMEOUT_S, Strategy, register_strategy


@dataclass
class DDPOptions:
    find_unused_parameters: bool = False  # every encoder runs every step: nothing goes unused
    static_graph: bool = False
    gradient_as_bucket_view: bool = False
    process_group_backend: str | None = None  # None: gloo on CPU, NCCL on GPU
    timeout_s: int = DEFAULT_TIMEOUT_S  # seconds a collective waits for the other ranks


@register_strategy
class DDPStrategy(Strategy):
    name = "ddp"
    Options = DDPOptions

    def lightning(self) -> Any:
        from lightning.pytorch.strategies import DDPStrategy as LightningDDP

        o = self.options
        self.nccl_watchdog()  # before the process group starts
        return LightningDDP(process_group_backend=self.process_group_backend(), timeout=self.timeout(),
                            find_unused_parameters=o.find_unused_parameters, static_graph=o.static_graph,
                            gradient_as_bucket_view=o.gradient_as_bucket_view)
