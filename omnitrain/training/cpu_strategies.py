"""Lightning's DeepSpeed and FSDP strategies, made to also run on CPU processes (gloo).

Why: CI and laptops have no GPU, yet the sharded code paths (ZeRO-3 construction,
partitioned checkpoints, consolidation) must be tested for real. DeepSpeed itself
trains on the CPU with the gloo backend; Lightning 2.6.6 refuses it in three places,
and torch FSDP needs an explicit CPU device. On a GPU these classes behave exactly as
Lightning's own (every override falls through to the parent when the root device is
not the CPU). lightning is pinned exactly in pyproject.toml because of these
overrides; re-check them when bumping it.

DeepSpeed (``lightning/pytorch/strategies/deepspeed.py``):

1. ``setup_environment`` raises unless the accelerator is CUDA -> run the plain DDP
   environment setup instead.
2. ``setup_distributed`` checks that device indices equal local ranks; CPU devices have
   index ``None`` -> skip that check only.
3. ``deepspeed.initialize(args=Namespace(device_rank=root_device.index))`` gets ``None``
   on CPU and fails comparing ``None >= 0`` -> pass the local rank.

FSDP (``lightning/pytorch/strategies/fsdp.py``): Lightning passes
``device_id=root_device.index`` (``None`` on CPU), and torch FSDP then looks for a CUDA
device -> pass ``torch.device("cpu")``. Saving a *full* FSDP state dict crashes on the
CPU, so config validation asks for ``state_dict_type=sharded`` there.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Any

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy
from torch.nn import Module


class OmniDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy that also runs on CPU processes."""

    @property
    def _on_cpu(self) -> bool:
        return self.root_device.type == "cpu"

    def setup_environment(self) -> None:
        if not self._on_cpu:
            return super().setup_environment()
        DDPStrategy.setup_environment(self)  # (1) no CUDA guard; calls setup_distributed

    def setup_distributed(self) -> None:
        if not self._on_cpu:
            return super().setup_distributed()
        reset_seed()  # (2) as the parent, minus the device-index check
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, model: Module, optimizer, lr_scheduler=None):
        if not self._on_cpu:
            return super()._setup_model_and_optimizer(model, optimizer, lr_scheduler)
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),  # (3)
            config=self.config,
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer


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
