"""Cross-entropy over the targets that are not ignored, summed and divided by a given
count: the per-token loss that step weighting (``omnitrain.training.stages.step_weights``) needs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from omnitrain.tokens import IGNORE_INDEX


def masked_cross_entropy(logits: Tensor, targets: Tensor, divisor: Tensor | None = None) -> Tensor:
    """Logits (..., V) and targets (...): the cross-entropy (in fp32) summed over targets
    that are not ``IGNORE_INDEX``, over ``divisor`` (default: their number, the mean)."""
    valid = targets != IGNORE_INDEX
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.clamp_min(0).reshape(-1),
                           reduction="none")
    return (loss * valid.reshape(-1)).sum() / (valid.sum().clamp_min(1) if divisor is None else divisor)
