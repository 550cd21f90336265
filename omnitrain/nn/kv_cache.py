"""Keys and values of every layer for the tokens decoded so far, so an autoregressive
model (the Thinker's ``step``, the dual-track Talker) runs one new token per step.

Several prompts decode together by padding their caches on the left to one length
(``stack_left_padded``): ``key_mask`` then says which cached keys are real, and
``step_mask`` gives each step's attention mask from it.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    def __init__(self) -> None:
        self.layers: dict[int, tuple[Tensor, Tensor]] = {}
        self.key_mask: Tensor | None = None  # (B, T) True where a cached key is real; None: all are

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

    def step_mask(self, n: int, device: torch.device) -> Tensor | None:
        """The boolean mask of the next ``n`` tokens over cached + new keys: causal among
        the new ones, every real cached key visible; None where nothing is hidden (one
        token, no padding). Call once per step, before the layers: it counts the new keys
        as real in ``key_mask``."""
        past = self.length
        causal = None if n == 1 else torch.ones(n, past + n, dtype=torch.bool, device=device).tril(past)
        if self.key_mask is None:
            return None if causal is None else causal[None, None]
        self.key_mask = torch.cat([self.key_mask, self.key_mask.new_ones(self.key_mask.shape[0], n)], 1)
        keys = self.key_mask[:, None, None, :]
        return keys if causal is None else keys & causal[None, None]

    @classmethod
    def stack_left_padded(cls, caches: list[KVCache]) -> KVCache:
        """One cache of several one-row caches, each padded on the left to the longest
        (zero keys and values, hidden by ``key_mask``), so their next tokens line up."""
        out = cls()
        longest = max(c.length for c in caches)
        for layer in caches[0].layers:
            ks, vs = [], []
            for c in caches:
                k, v = c.layers[layer]
                pad = longest - k.shape[2]
                ks.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                vs.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            out.layers[layer] = (torch.cat(ks), torch.cat(vs))
        device = next(iter(out.layers.values()))[0].device
        out.key_mask = torch.stack([torch.arange(longest, device=device) >= longest - c.length for c in caches])
        return out

    def keep_rows(self, rows: Tensor) -> None:
        """Drop every batch row not in ``rows`` (finished replies stop costing compute)."""
        self.layers = {i: (k[rows], v[rows]) for i, (k, v) in self.layers.items()}
        if self.key_mask is not None:
            self.key_mask = self.key_mask[rows]
