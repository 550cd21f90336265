"""LoRA (Hu et al. 2021, arXiv 2106.09685) on a model's own ``nn.Linear`` layers.

A targeted Linear keeps its class and its ``weight``/``bias`` names and gains a child
``lora`` (``LoRAAdapter``: ``A`` of shape (rank, in), ``B`` of shape (out, rank), ``B``
zero so training starts exactly at the base model) plus a forward hook that adds
``scale * B(A(dropout(x)))``, ``scale = alpha / rank``. Why not a wrapper that moves the
weight to ``base_layer.weight`` (what ``peft`` does): base checkpoints, ``init_from``,
bundles and HF mappings all address weights by name, and they keep working unchanged;
adapter tensors are simply extra names ending in ``.lora.A`` / ``.lora.B``. A module's 3-D
weights (experts) that it lists in ``lora_weights`` get one adapter per expert
(``omnitrain.nn.grouped_lora``: ``<module>.lora.<weight>.A``). The adapter
is a module whose parameters are made in its own ``__init__``, so under DeepSpeed's
``zero.Init`` it is partitioned like every other module, and on the meta device it
allocates nothing.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.nn.grouped_lora import GroupedLoRAAdapter, add_grouped_lora, grouped_delta_rows

_ADAPTER = re.compile(r"(^|\.)lora(\.\w+)?\.[AB]$")  # a Linear's (lora.A) or a 3-D weight's (lora.<weight>.A)


class LoRAAdapter(nn.Module):
    """The low-rank update of one Linear: ``scale * B @ A``."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float,
                 dropout: float = 0.0, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        self.A = nn.Parameter(torch.empty(rank, in_features, dtype=dtype))
        self.B = nn.Parameter(torch.empty(out_features, rank, dtype=dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear's (and peft's) default
        nn.init.zeros_(self.B)  # the model starts as the base model
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        # scaled at rank width: one output-sized tensor is made, not two
        return F.linear(F.linear(self.dropout(x), self.A) * self.scale, self.B)

    def delta(self) -> Tensor:
        """``scale * B @ A`` (out, in): what merging adds to the base weight."""
        return (self.B @ self.A) * self.scale


def _add_adapter(module: nn.Linear, args: tuple, output: Tensor) -> Tensor:
    # in place: the Linear's fresh output is saved by nothing yet, and an addition's
    # backward needs no values; a new sum would hold a third output-sized tensor at once
    return output.add_(module.lora(args[0]).to(output.dtype))


def is_adapter(name: str) -> bool:
    """True for an adapter tensor's (state-dict or parameter) name."""
    return _ADAPTER.search(name) is not None


def adapter_base(prefix: str) -> str:
    """The weight an adapter (its name without ``.A``/``.B``) updates: ``x.lora`` -> ``x.weight``
    (a Linear), ``x.lora.w`` -> ``x.w`` (a module's 3-D weight)."""
    head, _, tail = prefix.rpartition(".lora")
    return f"{head}.weight" if not tail else f"{head}{tail}"


def delta_rows(A: Tensor, B: Tensor, scale: float) -> Callable[[int, int], Tensor]:
    """``rows(first, last)``: those rows of an adapter's update seen as a (rows, in) matrix,
    float64; a Linear's adapter (2-D factors) or a 3-D weight's (one per group)."""
    if A.dim() == 3:
        return lambda first, last: grouped_delta_rows(A, B, scale, first, last)
    return lambda first, last: (B[first:last + 1].double() @ A.double()) * scale


def target_matches(target: str, name: str) -> bool:
    """A target names a Linear by its last name component (``q_proj``) or by a glob
    over its dotted path inside the slot (``layers.0.*``, ``*.attn.q_proj``)."""
    return name.rsplit(".", 1)[-1] == target or fnmatchcase(name, target)


def add_lora(module: nn.Module, targets: Sequence[str], rank: int, alpha: float, dropout: float = 0.0,
             where: str = "the model", root: nn.Module | None = None) -> list[str]:
    """Give every ``nn.Linear`` of ``module`` that a target matches an adapter; returns
    their names. Raises ``ValueError`` naming a target that matches nothing, or a
    Linear whose weight is tied to another tensor (merging would change both). A target may
    also name a 3-D weight a module lists in ``lora_weights`` (``gate_up_proj`` of experts)."""
    linears = {n: m for n, m in module.named_modules() if isinstance(m, nn.Linear) and n}
    grouped = {f"{n}.{w}": (m, w) for n, m in module.named_modules() for w in getattr(m, "lora_weights", ())}
    chosen: list[str] = []
    for target in targets:
        hits = [n for n in [*linears, *grouped] if target_matches(target, n)]
        if not hits:
            names = sorted({n.rsplit(".", 1)[-1] for n in [*linears, *grouped]})
            raise ValueError(f"lora.targets: '{target}' matches no Linear layer or expert weight in {where}; "
                             f"they are named {names[:30]} (or give a glob over the dotted path)")
        chosen += [n for n in hits if n not in chosen]
    for name in [n for n in chosen if n in grouped]:
        owner, weight = grouped[name]
        add_grouped_lora(owner, weight, rank, alpha, dropout)
    uses = Counter(id(p) for _, p in (root or module).named_parameters(remove_duplicate=False))
    for name in [n for n in chosen if n in linears]:
        linear = linears[name]
        if uses[id(linear.weight)] > 1:
            raise ValueError(f"lora: '{name}' in {where} shares its weight with another layer (tied "
                             "embeddings?); a merged adapter would change both: drop it from lora.targets")
        if hasattr(linear, "lora"):
            raise ValueError(f"lora: '{name}' in {where} already has an adapter")
        linear.lora = LoRAAdapter(linear.in_features, linear.out_features, rank, alpha, dropout,
                                  dtype=linear.weight.dtype)
        linear.register_forward_hook(_add_adapter)
    return chosen


def train_adapters_only(module: nn.Module, keep: Sequence[str] = (), where: str = "the model") -> None:
    """Freeze every parameter of ``module`` but its adapters and those matching a glob
    in ``keep`` (names relative to ``module``, e.g. ``norm.weight``, ``*norm*``)."""
    named = dict(module.named_parameters())
    for pattern in keep:
        if not any(fnmatchcase(n, pattern) for n in named):
            raise ValueError(f"lora.trainable: '{pattern}' matches no parameter of {where} "
                             f"(e.g. {sorted(named)[:5]})")
    for name, p in named.items():
        p.requires_grad_(is_adapter(name) or any(fnmatchcase(name, k) for k in keep))


@torch.no_grad()
def merge_lora_(module: nn.Module) -> int:
    """Fold every adapter into its base weight and remove it (in place, full tensors):
    the module then computes the same function as a plain model. Returns how many."""
    merged = 0
    for linear in [m for m in module.modules() if isinstance(m, nn.Linear) and hasattr(m, "lora")]:
        linear.weight += linear.lora.delta().to(linear.weight.dtype)
        del linear.lora
        for key, hook in list(linear._forward_hooks.items()):
            if hook is _add_adapter:
                del linear._forward_hooks[key]
        merged += 1
    for owner in [m for m in module.modules() if isinstance(getattr(m, "lora", None), nn.ModuleDict)]:
        for weight, adapter in owner.lora.items():
            if isinstance(adapter, GroupedLoRAAdapter):
                getattr(owner, weight).add_(adapter.delta().to(getattr(owner, weight).dtype))
                merged += 1
        del owner.lora
    return merged


def merged_piece(piece: Tensor, offset: int, in_features: int, A: Tensor, B: Tensor, scale: float) -> Tensor:
    """A flat piece of a base weight (elements [offset, offset + n) of the (out, in)
    matrix, row-major; a 3-D weight as (groups * out, in)) plus the same elements of
    ``scale * B @ A``, computing only the rows the piece touches."""
    n = piece.numel()
    if n == 0:
        return piece
    first, last = offset // in_features, (offset + n - 1) // in_features
    rows = delta_rows(A, B, scale)(first, last)
    start = offset - first * in_features
    return (piece.double() + rows.flatten()[start:start + n]).to(piece.dtype)
