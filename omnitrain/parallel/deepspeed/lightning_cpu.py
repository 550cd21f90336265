"""Lightning's DeepSpeed strategy, made to also run on CPU processes (gloo).

Why: CI and laptops have no GPU, yet the sharded code paths (ZeRO-3 construction,
partitioned checkpoints, consolidation) must be tested for real. DeepSpeed itself
trains on the CPU with the gloo backend; Lightning 2.6.6 refuses it in three places.
On a GPU this class behaves exactly as Lightning's own (every override falls through to
the parent when the root device is not the CPU). lightning is pinned exactly in
pyproject.toml because of these overrides; re-check them when bumping it.

``lightning/pytorch/strategies/deepspeed.py``:

1. ``setup_environment`` raises unless the accelerator is CUDA -> run the plain DDP
   environment setup instead.
2. ``setup_distributed`` checks that device indices equal local ranks; CPU devices have
   index ``None`` -> skip that check only.
3. ``deepspeed.initialize(args=Namespace(device_rank=root_device.index))`` gets ``None``
   on CPU and fails comparing ``None >= 0`` -> pass the local rank.

And on every device: DeepSpeed's checkpoint engine reads its files with
``torch.load(weights_only=False)``; ``load_checkpoint`` makes those reads data-only
(the types DeepSpeed's files hold allowed, nothing else), so resuming a checkpoint from
someone else cannot run code planted in it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from torch.nn import Module

from omnitrain.parallel.deepspeed.checkpoint import allowed_types


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

    def load_checkpoint(self, checkpoint_path, weights_only=None):
        with data_only_torch_load(allowed_types()):
            return super().load_checkpoint(checkpoint_path, weights_only)


@contextmanager
def data_only_torch_load(allowed: list[type]) -> Iterator[None]:
    """Every ``torch.load`` inside reads tensors, containers and ``allowed`` types only."""
    original = torch.load

    def load(*args, **kwargs):
        kwargs["weights_only"] = True
        with torch.serialization.safe_globals(allowed):
            return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
