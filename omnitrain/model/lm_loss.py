"""The language-model loss without the full logits: only where there are targets, a chunk
of rows at a time, each chunk's logits recomputed in backward.

A 151,936-word head over every position of 4 x 4,096 tokens is 10 GB of fp32 logits (and
as much again for their log-softmax and gradient), though the loss reads only the reply
tokens. Selecting the target rows first and checkpointing each chunk keeps one chunk's
logits alive at a time; the result equals the plain masked mean of cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from omnitrain.tokens import IGNORE_INDEX

CHUNK_ROWS = 1024  # rows of logits alive at once (1024 x 151,936 fp32 = 0.6 GB)


def _ce_sum(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def target_rows_loss(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor,
                     chunk: int = CHUNK_ROWS) -> Tensor:
    """Mean cross-entropy of ``head(hidden)`` at the positions whose target is not
    ignored. hidden (..., D), targets (...) with ``IGNORE_INDEX`` where no loss."""
    keep = targets != IGNORE_INDEX
    rows, wanted = hidden[keep], targets[keep]
    if rows.shape[0] == 0:  # keep the head in the graph (DDP, ZeRO-3) at zero loss
        return head(hidden.reshape(-1, hidden.shape[-1])[:1]).float().sum() * 0.0
    total = rows.new_zeros((), dtype=torch.float32)
    for i in range(0, rows.shape[0], chunk):
        part = (head, rows[i:i + chunk], wanted[i:i + chunk])
        total = total + (checkpoint(_ce_sum, *part, use_reentrant=False) if rows.requires_grad
                         else _ce_sum(*part))
    return total / rows.shape[0]
