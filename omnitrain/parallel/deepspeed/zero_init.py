"""Build a model under ZeRO-3 (``deepspeed.zero.Init``) with the same weights as without.

Why: ``zero.Init`` partitions a module's parameters as soon as that module's own
``__init__`` returns. A parent that then re-initialises a child's weight, e.g.
``nn.init.zeros_(self.modulation.weight)`` for an AdaLN-zero block, writes into an
empty placeholder: nothing happens and the model silently starts from different
weights than it would on one GPU (one of the composite-model ZeRO-3 init bugs users
hit, LLaMA-Factory #7537). Inside ``zero3_safe_inits`` every ``torch.nn.init``
function gathers a partitioned tensor first, runs on the full tensor on every rank
(so the RNG advances exactly as without ZeRO), and rank 0's result is re-partitioned.

Plugins should initialise through ``torch.nn.init`` (or ``Module.apply``, which
DeepSpeed already handles); in-place tensor methods on another module's parameter
(``child.weight.data.zero_()``) cannot be intercepted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
    "sparse_",
)


def _gathering(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def init(tensor: torch.Tensor, *args, **kwargs):
        if not hasattr(tensor, "ds_id"):  # not (yet) partitioned: the plain function
            return fn(tensor, *args, **kwargs)
        import deepspeed

        with deepspeed.zero.GatheredParameters([tensor], modifier_rank=0):
            fn(tensor, *args, **kwargs)
        return tensor

    return init


@contextmanager
def zero3_safe_inits() -> Iterator[None]:
    originals = {name: getattr(torch.nn.init, name) for name in INIT_FUNCTIONS}
    try:
        for name, fn in originals.items():
            setattr(torch.nn.init, name, _gathering(fn))
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch.nn.init, name, fn)


@contextmanager
def gathered_for_write(module: torch.nn.Module) -> Iterator[None]:
    """Whole parameters inside the block on every rank; rank 0's writes are kept.

    For copying weights into a ZeRO-3 model (``init_from``): its partitioned
    parameters otherwise show empty shapes. Needs the full model in memory once.
    """
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=0):
        yield


@contextmanager
def zero_init_paused() -> Iterator[None]:
    """Undo ``zero.Init``'s tensor-constructor patches for a block, if one is open: data
    made during construction (``fp32_cpu_data``) stays fp32 on the CPU."""
    from deepspeed.runtime.zero import partition_parameters as pp

    if pp.top_level_context is None:
        yield
        return
    pp.shutdown_init_context()
    try:
        yield
    finally:
        pp.restore_init_context()
