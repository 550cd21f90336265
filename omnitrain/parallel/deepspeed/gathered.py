"""Whole weights on every rank, with ZeRO-3's module hooks off, for a block of forwards
outside the training step (validation replies, the audio sample).

Under ZeRO-3 each forward of a submodule gathers its weights from every rank through
hooks, so ranks replying to different prompts (different lengths, different calls) would
wait on each other forever. Gathering every weight once and taking the hooks off lets each
rank run alone until the block ends; the hooks are put back and the weights re-partitioned
after. It costs the whole model's weights on each device for the block (as FSDP's
``summon_full_params`` does). The same steps as TRL's ``unwrap_model_for_generation``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _offload(engine: Any) -> Any | None:
    """The engine's parameter-offload object that owns the hooks (None before an optimizer)."""
    optimizer = getattr(engine, "optimizer", None)
    if optimizer is None:
        return None
    return getattr(optimizer, "parameter_offload", optimizer)


@contextmanager
def gathered_without_hooks(engine: Any) -> Iterator[None]:
    import deepspeed

    offload = _offload(engine)
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        if offload is None:
            yield
            return
        for param in offload.module.parameters():
            param.ds_active_sub_modules.clear()
        for hook in [*offload.forward_hooks, *offload.backward_hooks]:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)
