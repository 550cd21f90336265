"""NonFiniteGuard in a real tiny Lightning run (one Linear weight, SGD, CPU): a step whose
loss or gradient is not finite leaves the weight as it was, is counted and named, and
``patience`` such steps in a row stop the run. Fast stand-in for test_nonfinite_guard.py."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import pytest
import torch

from omnitrain.parallel.auto import AutoOptions, AutoStrategy
from omnitrain.training.callbacks.nonfinite import NonFiniteGuard, NonFiniteStop


@dataclass
class Batch:
    x: torch.Tensor
    keys: list[str]


class Tiny(L.LightningModule):
    """loss = w . x; ``bad``: training-step index -> how that step's loss goes wrong."""

    def __init__(self, bad: dict[int, str], manual: bool = False) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))
        self.bad, self.automatic_optimization = bad, not manual
        self.strategy = AutoStrategy(AutoOptions(), None)
        self.seen: list[torch.Tensor] = []  # the weight at the start of each batch

    def on_train_batch_start(self, batch, batch_idx):
        self.seen.append(self.w.detach().clone())

    def training_step(self, batch, batch_idx):
        loss = (self.w * batch.x).sum()
        how = self.bad.get(batch_idx)
        if how == "loss":  # a NaN loss whose gradient is finite
            loss = loss + torch.tensor(float("nan"))
        elif how == "grad":  # a finite loss (0) whose gradient is NaN: d sqrt(u) / du at 0 times 0
            loss = loss + torch.sqrt(0 * self.w.sum())
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def fit(module: Tiny, guard: NonFiniteGuard, steps: int, accumulate: int = 1, keys_per_batch: int = 2,
        other_rank_bad: bool | None = None) -> None:
    batches = [Batch(torch.tensor([1.0, 2.0]), [f"s{i}.{j}" for j in range(keys_per_batch)])
               for i in range(steps * accumulate)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, accumulate_grad_batches=accumulate,
                        callbacks=[guard], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    if other_rank_bad is not None:  # a second rank's verdict, combined as a collective would
        trainer.strategy.reduce_boolean_decision = (
            lambda here, all=True: (here and other_rank_bad) if all else (here or other_rank_bad))
    trainer.fit(module, loader)


def moved(module: Tiny) -> list[bool]:
    """Whether each step changed the weight (SGD on w . [1, 2] at lr 0.5 always does)."""
    return [not torch.equal(a, b) for a, b in zip(module.seen, module.seen[1:])]


@pytest.mark.parametrize("how", ["loss", "grad"])
def test_a_bad_step_keeps_the_weight_is_counted_and_named(how, caplog):
    """Steps 1 and 2 are bad (a NaN loss with finite gradients, or the reverse): the weight
    stays, each is logged with its step and samples; the good step 3 resets the streak."""
    module, guard = Tiny({1: how, 2: how}), NonFiniteGuard(patience=3)
    with caplog.at_level(logging.WARNING, logger="omnitrain"):
        fit(module, guard, steps=5)
    assert moved(module) == [True, False, False, True]
    assert all(torch.isfinite(w).all() for w in module.seen)
    assert (guard.skipped_total, guard.in_a_row) == (2, 0)
    assert module.trainer.callback_metrics["train/nonfinite_skipped"].item() == 2.0  # the running count, logged
    assert [r.getMessage() for r in caplog.records] == [
        "step 2 skipped: non-finite loss or gradient (1 in a row, 1 in all); samples: s1.0, s1.1",
        "step 3 skipped: non-finite loss or gradient (2 in a row, 2 in all); samples: s2.0, s2.1",
    ]


def test_patience_bad_steps_in_a_row_stop_the_run():
    module, guard = Tiny({0: "loss", 2: "loss", 3: "loss"}), NonFiniteGuard(patience=2)
    with pytest.raises(NonFiniteStop, match=r"^2 optimizer steps in a row .*\(the last at step 4, samples: s3.0, s3.1\)"):
        fit(module, guard, steps=6)
    assert (guard.skipped_total, guard.in_a_row) == (3, 2)
    assert moved(module) == [False, True, False]


def test_one_bad_micro_batch_drops_the_whole_accumulated_step():
    """accumulate 2: a NaN loss in the first micro-batch of step 1 drops that step (the
    second micro-batch's finite loss does not clear it); it counts once, as one step."""
    module, guard = Tiny({2: "loss"}), NonFiniteGuard(patience=2)
    fit(module, guard, steps=3, accumulate=2, keys_per_batch=5)
    # weights at the start of micro-batches 0..5: only optimizer steps 0 and 2 move them
    assert moved(module) == [False, True, False, False, False]
    assert (guard.skipped_total, guard.in_a_row) == (1, 0)


def test_many_keys_are_cut_to_eight(caplog):
    """The 10 keys of an accumulated step (two micro-batches of 5): the first 8, then "..."."""
    module, guard = Tiny({2: "loss"}), NonFiniteGuard(patience=2)
    with caplog.at_level(logging.WARNING, logger="omnitrain"):
        fit(module, guard, steps=2, accumulate=2, keys_per_batch=5)
    assert caplog.records[0].getMessage().endswith("samples: s2.0, s2.1, s2.2, s2.3, s2.4, s3.0, s3.1, s3.2 ...")


@pytest.mark.parametrize(("keys", "dots"), [(8, ""), (9, " ...")])
def test_eight_keys_are_named_whole_nine_are_cut(caplog, keys, dots):
    module, guard = Tiny({0: "loss"}), NonFiniteGuard(patience=2)
    with caplog.at_level(logging.WARNING, logger="omnitrain"):
        fit(module, guard, steps=1, keys_per_batch=keys)
    named = ", ".join(f"s0.{j}" for j in range(8))
    assert caplog.records[0].getMessage().endswith(f"samples: {named}{dots}")


@pytest.mark.parametrize("other_rank_bad", [False, True])
def test_any_rank_with_a_bad_step_drops_it_on_every_rank(other_rank_bad):
    """This rank's step is finite; another rank's is not: all ranks must drop it (else the
    weights differ between ranks)."""
    module, guard = Tiny({}), NonFiniteGuard(patience=5)
    fit(module, guard, steps=3, other_rank_bad=other_rank_bad)
    assert moved(module) == [not other_rank_bad] * 2
    assert guard.skipped_total == (3 if other_rank_bad else 0)


def test_manual_optimization_is_not_guarded():
    """The GAN stage steps by hand: a NaN loss there (finite gradients) is neither dropped nor counted."""
    module, guard = Tiny({1: "loss"}, manual=True), NonFiniteGuard(patience=1)
    fit(module, guard, steps=3)
    assert moved(module) == [True, True]
    assert (guard.skipped_total, guard.in_a_row) == (0, 0)


def test_counters_survive_a_resume():
    guard = NonFiniteGuard(patience=3)
    guard.skipped_total, guard.in_a_row = 5, 2
    resumed = NonFiniteGuard(patience=3)
    resumed.load_state_dict(guard.state_dict())
    assert (resumed.skipped_total, resumed.in_a_row) == (5, 2)
    resumed.load_state_dict({})  # a checkpoint from before the guard
    assert (resumed.skipped_total, resumed.in_a_row) == (0, 0)
