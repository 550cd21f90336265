"""The language-model loss without the full logits: only where there are targets, a chunk
of rows at a time.

A 151,936-word head over every position of 4 x 4,096 tokens is 10 GB of fp32 logits (and
as much again for their log-softmax and gradient), though the loss reads only the reply
tokens. Selecting the target rows first and going a chunk at a time keeps one chunk's
logits alive; the result equals the plain masked mean of cross-entropy.

When the head is a plain ``nn.Linear`` whose weight is all here (not sharded by ZeRO-3 or
FSDP), the head and the cross-entropy are fused (``_FusedHeadCE``): each chunk's gradient
with respect to its rows and to the weight is computed in the forward, right after its
logits, so backward only scales them: no logits are recomputed, no logits are kept.
Otherwise each chunk is checkpointed (its logits recomputed in backward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnitrain.tokens import IGNORE_INDEX

CHUNK_ROWS = 1024  # rows of logits alive at once (1024 x 151,936 fp32 = 0.6 GB)


def _ce_sum(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


class _FusedHeadCE(torch.autograd.Function):
    """sum of cross-entropy of ``rows @ weight.T`` against ``targets``; the gradients are
    computed chunk by chunk in the forward (fp32 accumulation for the weight's)."""

    @staticmethod
    def forward(ctx, rows: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
        want_rows, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_rows = torch.empty_like(rows) if want_rows else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_weight else None
        total = torch.zeros((), dtype=torch.float32, device=rows.device)
        device = rows.device.type
        # the matmuls' dtype: autocast's if on (cast the weight once, not once per chunk)
        amp = torch.amp.is_autocast_available(device)  # not on "meta" (the no-sync test)
        dtype = (torch.get_autocast_dtype(device) if amp and torch.is_autocast_enabled(device)
                 else torch.promote_types(rows.dtype, weight.dtype))
        w = weight.to(dtype)
        with torch.autocast(device, enabled=False) if amp else contextlib.nullcontext():
            for i in range(0, rows.shape[0], chunk):
                h, t = rows[i:i + chunk].to(dtype), targets[i:i + chunk]
                logits = F.linear(h, w).float()  # one (chunk, vocab) buffer, reused in place below
                picked = logits.gather(1, t[:, None])
                top = logits.amax(-1, keepdim=True)
                probs = logits.sub_(top).exp_()
                norm = probs.sum(-1, keepdim=True)
                total += (norm.log() + top - picked).sum()  # log-sum-exp minus the target's logit
                if not (want_rows or want_weight):
                    continue
                g = probs.div_(norm)  # softmax - one_hot(target): d CE / d logits
                g.scatter_add_(1, t[:, None], torch.full_like(t[:, None], -1, dtype=g.dtype))
                g = g.to(dtype)
                del logits
                if want_rows:
                    grad_rows[i:i + chunk] = g @ w
                if want_weight:
                    grad_weight += (g.t() @ h).float()
        ctx.grads = (grad_rows, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor):
        grad_rows, grad_weight = ctx.grads
        ctx.grads = None  # handed over: autograd may keep the weight's without a copy
        if grad_rows is not None:
            grad_rows = grad_rows.mul_(grad_total.to(grad_rows.dtype))
        if grad_weight is not None:
            grad_weight = grad_weight.mul_(grad_total).to(ctx.weight_dtype)
        return grad_rows, grad_weight, None, None


def fusable(head: object, hidden: Tensor) -> bool:
    """A bias-free ``nn.Linear`` whose full weight is here (ZeRO-3 and FSDP keep a shard
    outside the module's own forward; those go the checkpointed way)."""
    if type(head) is not nn.Linear or head.bias is not None:  # a LoRA-wrapped head is not plain
        return False
    w = head.weight
    return (w.dim() == 2 and w.shape[1] == hidden.shape[-1] and w.shape[0] > 0 and not hasattr(w, "ds_id")
            and type(w) in (nn.Parameter, torch.Tensor))


def target_rows_loss(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor,
                     chunk: int = CHUNK_ROWS, index: Tensor | None = None,
                     divisor: Tensor | float | None = None) -> Tensor:
    """Mean cross-entropy of ``head(hidden)`` at the positions whose target is not
    ignored. hidden (..., D), targets (...) with ``IGNORE_INDEX`` where no loss.
    ``index``: those positions, flat, found on the host (``Batch.target_index``); without
    it they are found here, which syncs a GPU with the host. ``divisor``: the sum is
    divided by it instead of by this call's number of targets (a whole step's count)."""
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    if index is None:
        index = (flat_targets != IGNORE_INDEX).nonzero()[:, 0]
    index = index.to(hidden.device)
    n = index.shape[0]
    if n == 0:  # keep the head in the graph (DDP, ZeRO-3) at zero loss
        return head(flat_hidden[:1]).float().sum() * 0.0
    rows, wanted = flat_hidden.index_select(0, index), flat_targets.index_select(0, index)
    if fusable(head, hidden):
        return _FusedHeadCE.apply(rows, head.weight, wanted, chunk) / (n if divisor is None else divisor)
    total = rows.new_zeros((), dtype=torch.float32)
    for i in range(0, n, chunk):
        part = (head, rows[i:i + chunk], wanted[i:i + chunk])
        total = total + (checkpoint(_ce_sum, *part, use_reentrant=False) if rows.requires_grad
                         else _ce_sum(*part))
    return total / (n if divisor is None else divisor)
