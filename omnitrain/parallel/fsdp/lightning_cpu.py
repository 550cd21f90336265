"""Lightning's FSDP strategy, made to also run on CPU processes (gloo).

``lightning/pytorch/strategies/fsdp.py`` passes ``device_id=root_device.index`` (``None``
on CPU), and torch FSDP then looks for a CUDA device -> pass ``torch.device("cpu")``.
Saving a *full* FSDP state dict crashes on the CPU, so the strategy's check asks for
``state_dict_type=sharded`` there. On a GPU this class behaves exactly as Lightning's
own. lightning is pinned exactly in pyproject.toml because of these overrides.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch.nn import Module


class OmniFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP strategy that also runs on CPU processes."""

    @property
    def _on_cpu(self) -> bool:
        return self.root_device.type == "cpu"

    def _setup_model(self, model: Module) -> Module:
        if not self._on_cpu:
            return super()._setup_model(model)
        from lightning.pytorch.strategies.fsdp import _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel

        if not any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            model = FullyShardedDataParallel(
                module=model,
                cpu_offload=self.cpu_offload,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy,
                device_id=torch.device("cpu"),
                **self.kwargs,
            )
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)
        return model

    @contextmanager
    def model_sharded_context(self):
        if not self._on_cpu:
            with super().model_sharded_context():
                yield
            return
        from torch.distributed.fsdp.fully_sharded_data_parallel import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import enable_wrap

        with enable_wrap(
            wrapper_cls=FullyShardedDataParallel,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=torch.device("cpu"),
            **self.kwargs,
        ):
            yield

    def _determine_device_ids(self) -> list[Any]:
        return [] if self._on_cpu else super()._determine_device_ids()
