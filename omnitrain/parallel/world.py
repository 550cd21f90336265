"""How many processes a run has, before it starts."""

from __future__ import annotations

import os
from typing import Any


def world_size_of(cfg: Any) -> int:
    """Processes this run will have: from torchrun/SLURM when launched by them, else
    ``trainer.devices x trainer.num_nodes`` (``auto`` = every visible GPU, 1 on CPU)."""
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    devices = cfg.trainer.devices
    nodes = int(cfg.trainer.num_nodes or 1)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if isinstance(devices, list | tuple):
        return len(devices) * nodes
    if str(cfg.trainer.accelerator) == "cpu":
        return nodes
    import torch

    return max(1, torch.cuda.device_count()) * nodes
