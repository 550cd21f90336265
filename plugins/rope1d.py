"""Classic 1D RoPE: one row of consecutive ids over every token (the baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.api import PositionScheme, Segment, inverse_frequencies, layout_length, register


@dataclass
class Rope1dConfig:
    theta: float = 1000000.0


@register("position", "rope1d", config=Rope1dConfig)
class Rope1d(PositionScheme):
    """Plain 1D rotary positions, blind to time and space."""

    rows = 1

    def __init__(self, cfg: Rope1dConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def position_ids(self, layout: list[Segment]) -> Tensor:
        return torch.arange(layout_length(layout), dtype=torch.long)[None]

    def rotary(self, position_ids: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
        inv = inverse_frequencies(head_dim, self.cfg.theta, position_ids.device)
        angles = position_ids[0].float()[..., None] * inv  # (B, L, head_dim/2)
        emb = torch.cat([angles, angles], dim=-1)
        return emb.cos(), emb.sin()
