"""The dtype a module computes in, for tensors a plugin makes in its forward.

Under ``bf16-mixed`` (autocast) parameters stay fp32 and autocast picks each op's dtype;
under DeepSpeed/FSDP bf16 or ``bf16-true`` the parameters themselves are bf16 and nothing
casts for us. A plugin that makes a float tensor in its forward (sinusoids, noise, a
reference embedding) or receives one made elsewhere in fp32 casts it to
``param_dtype(self)`` before its first layer: a no-op in fp32 and under autocast, and the
right dtype under bf16 weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

import torch
from torch import nn


def param_dtype(module: nn.Module) -> torch.dtype:
    """Dtype of the module's first parameter (a ZeRO-3 placeholder keeps its dtype)."""
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


#: context managers a strategy adds around data made during model construction (DeepSpeed
#: pauses its ``zero.Init`` tensor patches), so nothing here names a strategy
DATA_GUARDS: list[Callable[[], AbstractContextManager]] = []


@contextmanager
def fp32_cpu_data() -> Iterator[None]:
    """Make data tensors (dummy inputs, features, a codec's tables) in fp32 on the CPU
    whatever construction context is active: Lightning's ``bf16-true`` sets a bf16
    default dtype (for init and forward), meta or sharded construction a default device,
    and a sharded construction may patch tensor constructors (its ``DATA_GUARDS`` entry
    undoes that here; no parameters may be made inside)."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with ExitStack() as stack:
            for guard in DATA_GUARDS:
                stack.enter_context(guard())
            stack.enter_context(torch.device("cpu"))
            yield
    finally:
        torch.set_default_dtype(saved)
