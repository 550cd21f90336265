"""LoRA on a module's 3-D weights: a mixture of experts' ``(experts, out, in)`` tensors.

Each expert gets its own low-rank update, ``W[e] + scale * B[e] @ A[e]`` with ``A`` of shape
(experts, rank, in) and ``B`` (experts, out, rank), ``B`` zero so training starts at the
base model: what a Linear's adapter is (``omnitrain.nn.lora``), once per expert. The weight
itself is never rebuilt: the module adds ``adapter.apply(x, ...)`` to its matmul's output,
per expert (the loop) or for all experts at once (two more grouped matmuls), so memory grows
by the adapters and their rank-wide activations only.

A module offers its 3-D weights by listing them in ``lora_weights``; the adapters live in
its ``lora`` ModuleDict under the weight's name, so their tensors are named
``<module>.lora.<weight>.A`` / ``.B`` and merge into ``<module>.<weight>``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GroupedLoRAAdapter(nn.Module):
    """The low-rank updates of a (groups, out, in) weight, one per group."""

    def __init__(self, groups: int, in_features: int, out_features: int, rank: int, alpha: float,
                 dropout: float = 0.0, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        self.A = nn.Parameter(torch.empty(groups, rank, in_features, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(groups, out_features, rank, dtype=dtype))
        for a in self.A:  # each expert's A as a Linear's adapter starts
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def one(self, x: Tensor, group: int) -> Tensor:
        """(n, in) rows of one group -> their (n, out) update."""
        return F.linear(F.linear(self.dropout(x), self.A[group]) * self.scale, self.B[group])

    def grouped(self, x: Tensor, offsets: Tensor) -> Tensor:
        """(n, in) rows sorted by group (``offsets``: each group's end) -> their (n, out) updates."""
        low = torch._grouped_mm(self.dropout(x), self.A.transpose(1, 2), offs=offsets) * self.scale
        return torch._grouped_mm(low, self.B.transpose(1, 2), offs=offsets)

    def delta(self) -> Tensor:
        """``scale * B @ A`` (groups, out, in): what merging adds to the base weight."""
        return torch.bmm(self.B, self.A) * self.scale


def add_grouped_lora(module: nn.Module, weight: str, rank: int, alpha: float, dropout: float = 0.0) -> None:
    """An adapter for ``module``'s 3-D parameter ``weight`` (groups, out, in)."""
    param = getattr(module, weight)
    shape = tuple(getattr(param, "ds_shape", param.shape))  # ZeRO-3 partitions while the model is built
    if len(shape) != 3:
        raise ValueError(f"grouped LoRA needs a 3-D weight, '{weight}' is {shape}")
    if not hasattr(module, "lora"):
        module.lora = nn.ModuleDict()
    if weight in module.lora:
        raise ValueError(f"lora: '{weight}' already has an adapter")
    groups, out, inp = shape
    module.lora[weight] = GroupedLoRAAdapter(groups, inp, out, rank, alpha, dropout, dtype=param.dtype)


def grouped_delta_rows(A: Tensor, B: Tensor, scale: float, first: int, last: int) -> Tensor:
    """``GroupedLoRAAdapter.rows`` from the adapter's tensors (a checkpoint's, when merging a stream)."""
    out = B.shape[1]
    g0, g1 = first // out, last // out
    block = torch.bmm(B[g0:g1 + 1].double(), A[g0:g1 + 1].double()).reshape(-1, A.shape[2])
    return block[first - g0 * out:last - g0 * out + 1] * scale
