"""Keys and values of every layer for the tokens decoded so far, so an autoregressive
model (the Thinker's ``step``, the dual-track Talker) runs one new token per step."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    def __init__(self) -> None:
        self.layers: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this step's (B, H_kv, n, D) keys and values; return all of them."""
        if layer in self.layers:
            old_k, old_v = self.layers[layer]
            k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
        self.layers[layer] = (k, v)
        return k, v

    @property
    def length(self) -> int:
        return next(iter(self.layers.values()))[0].shape[2] if self.layers else 0
