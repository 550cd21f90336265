"""Attention restricted to segments (audio chunks, vision windows, frames, items).

Tokens are grouped by segment id, padded into a (segments, longest, ...) batch and
run through SDPA with a key-padding mask, so memory grows with the longest segment
squared, not with all tokens squared. Token order in and out is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class SegmentPlan:
    order: Tensor  # token indices sorted by segment (stable)
    segment: Tensor  # segment slot of each sorted token
    position: Tensor  # position inside its segment
    lengths: Tensor  # tokens per segment
    longest: int = -1  # the longest segment, known on the host (-1: read it when needed)

    @classmethod
    def build(cls, segment_ids: Tensor, device: torch.device | str | None = None) -> SegmentPlan:
        """``segment_ids`` on the CPU (the ids are usually made there) and ``device``: the
        plan is made on the host, where reading the longest segment costs nothing, and
        then moved, so the forward never reads a GPU tensor back."""
        order = torch.argsort(segment_ids, stable=True)
        lengths = torch.unique_consecutive(segment_ids[order], return_counts=True)[1]
        slots = torch.arange(lengths.numel(), device=segment_ids.device)
        segment = slots.repeat_interleave(lengths)
        starts = lengths.cumsum(0) - lengths
        position = torch.arange(order.numel(), device=segment_ids.device) - starts.repeat_interleave(lengths)
        longest = int(lengths.max()) if segment_ids.device.type == "cpu" and lengths.numel() else -1
        plan = cls(order, segment, position, lengths, longest)
        if device is None:
            return plan
        return cls(*(t.to(device, non_blocking=True) for t in (order, segment, position, lengths)), longest)

    def pad(self, x: Tensor) -> Tensor:
        """(N, ...) -> (segments, longest, ...)."""
        longest = self.longest if self.longest >= 0 else int(self.lengths.max())
        out = x.new_zeros(self.lengths.numel(), longest, *x.shape[1:])
        out[self.segment, self.position] = x[self.order]
        return out

    def unpad(self, x: Tensor) -> Tensor:
        """(segments, longest, ...) -> (N, ...) in the original token order."""
        out = torch.empty(self.order.numel(), *x.shape[2:], dtype=x.dtype, device=x.device)
        out[self.order] = x[self.segment, self.position]
        return out


def segment_attention(q: Tensor, k: Tensor, v: Tensor, plan: SegmentPlan) -> Tensor:
    """q, k, v (N, H, D) -> (N, H, D), each token attending only within its segment."""
    Q, K, V = (plan.pad(x).transpose(1, 2) for x in (q, k, v))  # (S, H, Lmax, D)
    keys = torch.arange(Q.shape[2], device=q.device)[None] < plan.lengths[:, None]
    out = F.scaled_dot_product_attention(Q, K, V, attn_mask=keys[:, None, None, :])
    return plan.unpad(out.transpose(1, 2))
