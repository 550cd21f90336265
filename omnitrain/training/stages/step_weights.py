"""Per-token losses weighted by the whole optimizer step, over all micro-batches and ranks.

The loader hands each micro-batch this rank's counts for its whole step
(``Batch.step_totals``, ``omnitrain.data.step_groups``). At the step's first micro-batch
one all-reduce of those few counts gives the global totals N; each micro-batch's loss is
then (sum of its per-token losses) / (N / c), where c undoes what happens to the
gradient of the loss ``training_step`` returns on its way to the optimizer:

- Lightning's automatic optimization divides it by A = ``accumulate_grad_batches``
  (``ClosureResult.from_training_step_output(..., normalize=A)``), for every strategy,
  also on an epoch's last step with fewer than A micro-batches;
- DeepSpeed (a strategy that ``handles_gradient_accumulation``) divides again by its
  ``gradient_accumulation_steps`` in ``DeepSpeedEngine.backward`` (``scale_wrt_gas``),
  which Lightning sets to A;
- DDP, ZeRO and FSDP average the summed gradients over the W data-parallel ranks.

So the optimizer sees sum over micro-batches and ranks of c s / (N A W) (x 1/A more under
DeepSpeed), which is d(sum of the step's per-token losses)/N exactly when c = A W on one
process, DDP and FSDP (W = 1 on one process) and c = A^2 W under DeepSpeed.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

log = logging.getLogger("omnitrain")

COUNTED = ("text", "codec", "flow")
# auxiliary losses (a router's) are means over one forward: their count is the step's
# micro-batches, so each micro-batch of the step and of every rank weighs alike
AUX_COUNT = "micro_batches"


def gradient_divisor(trainer) -> int:
    """c above: what the gradient of ``training_step``'s loss is divided by before the
    optimizer step (Lightning's accumulation scaling, the strategy's own, rank averaging)."""
    accumulate = int(trainer.accumulate_grad_batches)
    divisor = accumulate * int(trainer.world_size)
    if trainer.strategy.handles_gradient_accumulation:
        engine = getattr(trainer.strategy, "deepspeed_engine", None)
        if engine is None:
            raise NotImplementedError(f"{type(trainer.strategy).__name__} accumulates gradients itself, and "
                                      "how it scales the loss is not known here (omnitrain.training.stages.step_weights)")
        divisor *= int(engine.gradient_accumulation_steps())
    return divisor


def summed_over_ranks(values: Tensor) -> Tensor:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values)
    return values


class StepWeights:
    """One optimizer step's loss normalisers and the sums of its logged losses."""

    def __init__(self) -> None:
        self.norms: dict[str, Tensor] | None = None
        self.divisor = 1
        self.micro_batches = 0  # of this step, as the loader grouped them
        self.sums: dict[str, Tensor] = {}
        self.warned = False

    def begin(self, totals: dict[str, int], trainer, device: torch.device) -> None:
        """At the step's first micro-batch: one all-reduce of this rank's counts (on the
        device; nothing is read back to the host)."""
        names = (*COUNTED, AUX_COUNT)
        counts = torch.tensor([totals[k] for k in names], dtype=torch.int64).to(device, non_blocking=True)
        counts = summed_over_ranks(counts)
        self.divisor = gradient_divisor(trainer)
        norms = (counts.clamp_min(1).double() / self.divisor).float()
        self.norms = dict(zip((*COUNTED, "aux"), norms.unbind(), strict=True))
        self.micro_batches = int(totals.get("micro_batches", 0))
        self.sums = {}

    def add(self, losses: dict[str, Tensor]) -> None:
        """A micro-batch's losses; each divided by c is its share of the step's mean."""
        for name, value in losses.items():
            share = value.detach().float() / self.divisor
            self.sums[name] = self.sums[name] + share if name in self.sums else share

    def means(self) -> dict[str, Tensor]:
        """The step's weighted means over all ranks (one all-reduce): the call every rank
        makes at the step's last micro-batch."""
        names = list(self.sums)
        total = summed_over_ranks(torch.stack([self.sums[n] for n in names]))
        return dict(zip(names, total.unbind(), strict=True))

    def check_grouping(self, micro_batches: int, step: int) -> None:
        """The step Lightning made has as many micro-batches as the loader grouped; if not
        (``limit_train_batches``, or DeepSpeed stepping across an epoch's end when the epoch
        length is not a multiple of ``accumulate_grad_batches``), the weights are off."""
        if micro_batches != self.micro_batches and not self.warned:
            self.warned = True
            log.warning("optimizer step %d took %d micro-batches but the loader grouped %d for it: the "
                        "losses are weighted by another step's counts. Make the epoch length a multiple of "
                        "trainer.accumulate_grad_batches and leave limit_train_batches unset",
                        step, micro_batches, self.micro_batches)
