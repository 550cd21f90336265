"""Validation metrics as weighted means over every rank's batches.

Validation splits the samples over the ranks without duplicates, so each rank sees a
different share (and a rank whose batches hold no speech has no speech metric). Each rank
adds ``value x weight`` and ``weight`` per metric on the device (no host read per batch);
at the epoch's end the metric names are shared (one object gather) and the sums reduced
(one all-reduce), so every rank logs the same means over all the validation data.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RankMeans:
    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.weights: dict[str, float] = {}

    def add(self, name: str, value: Tensor, weight: float) -> None:
        """``value``: the mean over ``weight`` items (samples, tokens) of one batch."""
        if weight <= 0:
            return
        contribution = value.detach().float() * weight
        self.sums[name] = self.sums[name] + contribution if name in self.sums else contribution
        self.weights[name] = self.weights.get(name, 0.0) + weight

    def add_total(self, name: str, total: Tensor, count: float) -> None:
        """A sum and how many items it counts (a count of 0 still adds its sum: a corpus
        error rate counts the insertions of a reply with no reference words)."""
        self.sums[name] = self.sums[name] + total.detach().float() if name in self.sums else total.detach().float()
        self.weights[name] = self.weights.get(name, 0.0) + count

    def reduce(self, device: torch.device) -> dict[str, Tensor]:
        """The means over all ranks (every rank must call it), and a fresh start."""
        dist = torch.distributed
        names = set(self.sums)
        parallel = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if parallel:
            gathered: list[set[str] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, names)
            names = set().union(*(g for g in gathered if g))
        order = sorted(names)
        zero = torch.zeros((), device=device)
        totals = torch.stack([torch.stack([self.sums.get(n, zero).to(device),
                                           torch.tensor(self.weights.get(n, 0.0), device=device)])
                              for n in order]) if order else torch.zeros(0, 2, device=device)
        if parallel:
            dist.all_reduce(totals)
        self.sums, self.weights = {}, {}
        return {n: totals[i, 0] / totals[i, 1] for i, n in enumerate(order) if float(totals[i, 1]) > 0}
