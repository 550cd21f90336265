"""The global batch: samples per optimizer step across every process.

``data.batch_size`` is per process (per GPU). A recipe may instead fix
``data.global_batch_size``, the quantity its learning rate was tuned for; the per-process
batch is then ``global / (world size x trainer.accumulate_grad_batches)`` and must be a
whole number, or ranks would train on different batch sizes. Without
``global_batch_size`` the global batch simply scales with the world size.
"""

from __future__ import annotations

import dataclasses

from omnitrain.config.typed import RunConfig
from omnitrain.config.validate import ConfigError


def per_rank_batch(global_batch: int, world: int, accumulate: int) -> int:
    """``global_batch`` split over ``world`` processes and ``accumulate`` micro-steps."""
    share = world * accumulate
    if global_batch <= 0 or global_batch % share:
        fits = [n for n in range(1, global_batch + 1) if global_batch % (n * accumulate) == 0]
        lower, upper = (global_batch // share) * share, (global_batch // share + 1) * share
        raise ConfigError(
            f"data.global_batch_size={global_batch} does not divide over {world} processes x "
            f"trainer.accumulate_grad_batches={accumulate}: every process must take the same "
            f"whole number of samples per step. Use a global batch that is a multiple of {share} "
            f"(e.g. {max(lower, share)} or {upper}), or run on one of these process counts: "
            f"{fits[:12]}"
        )
    return global_batch // share


def resolve_batch_size(cfg: RunConfig, world: int) -> RunConfig:
    """The config with ``data.batch_size`` set from ``data.global_batch_size`` (if given)."""
    global_batch = cfg.data.global_batch_size
    if global_batch is None:
        return cfg
    accumulate = int(cfg.trainer.accumulate_grad_batches or 1)
    batch = per_rank_batch(int(global_batch), world, accumulate)
    return cfg.replace(data=dataclasses.replace(cfg.data, batch_size=batch))


def static_batch_problems(cfg: RunConfig) -> list[str]:
    """The same check at compose time, when the world size is fixed by the config."""
    global_batch = cfg.data.global_batch_size
    devices = cfg.trainer.devices
    if global_batch is None or not isinstance(devices, int) or devices <= 0:
        return []
    try:
        world = devices * int(cfg.trainer.num_nodes or 1)
        per_rank_batch(int(global_batch), world, int(cfg.trainer.accumulate_grad_batches or 1))
    except ConfigError as exc:
        return [str(exc)]
    return []
