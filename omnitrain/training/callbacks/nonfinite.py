"""Skip optimizer steps whose loss or gradients are not finite; stop after N in a row.

One NaN (a corrupt sample, a too-high learning rate) otherwise flows into the weights
and every later checkpoint. Here the step is dropped instead: the weights and optimizer
moments stay as they were, the step still counts (the data position and the learning-rate
schedule follow the global step, so a resume stays exact), and the batch's sample keys
are named in the log. ``optim.nonfinite_patience`` such steps in a row stop the run with
``NonFiniteStop`` (a non-zero exit) and no checkpoint is written, so the last good one is
untouched.

How a step is dropped is the strategy's business (``Strategy.drop_step``): torch
optimizers skip parameters without gradients; DeepSpeed's ZeRO optimizers skip a step
with a non-finite gradient norm themselves. Under a GradScaler (fp16) the scaler does.
Only automatic optimization is guarded (the GAN vocoder stage steps by hand).
"""

from __future__ import annotations

import logging

import lightning as L
import torch

log = logging.getLogger("omnitrain")


class NonFiniteStop(RuntimeError):
    """``patience`` optimizer steps in a row had a non-finite loss or gradient."""


class NonFiniteGuard(L.Callback):
    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.skipped_total = 0
        self.in_a_row = 0
        self._finite: torch.Tensor | bool = True  # every loss of this optimizer step so far (on the device)
        self._keys: list[str] = []  # sample keys of the current optimizer step
        self._dropped = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._keys.extend(getattr(batch, "keys", []) or [])

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if pl_module.automatic_optimization:  # kept on the device: read once per optimizer step
            self._finite = torch.isfinite(loss.detach()).all() & self._finite

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not pl_module.automatic_optimization:
            return
        strategy = pl_module.strategy
        # the one host read of the step: losses of every micro-batch and the gradients together
        bad_here = not bool(strategy.local_grads_finite(trainer) & self._finite)
        # every rank must drop the same step (one rank's NaN would otherwise desync the weights)
        self._dropped = trainer.strategy.reduce_boolean_decision(bad_here, all=False)
        if self._dropped and getattr(trainer.precision_plugin, "scaler", None) is None:
            strategy.drop_step(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not pl_module.automatic_optimization or trainer.fit_loop._should_accumulate():
            return
        skipped = pl_module.strategy.step_was_skipped(trainer, self._dropped)
        keys = ", ".join(self._keys[:8]) + (" ..." if len(self._keys) > 8 else "")
        self._finite, self._keys, self._dropped = True, [], False  # the next step starts
        if not skipped:
            self.in_a_row = 0
            return
        self.skipped_total += 1
        self.in_a_row += 1
        pl_module.log("train/nonfinite_skipped", float(self.skipped_total), reduce_fx="max")
        log.warning("step %d skipped: non-finite loss or gradient (%d in a row, %d in all); samples: %s",
                    trainer.global_step, self.in_a_row, self.skipped_total, keys or "(no keys)")
        if self.in_a_row >= self.patience:
            raise NonFiniteStop(
                f"{self.in_a_row} optimizer steps in a row had a non-finite loss or gradient (the last at step "
                f"{trainer.global_step}, samples: {keys or '(no keys)'}); stopped without saving, so the last "
                "checkpoint holds the last good weights. Lower optim.lr, check those samples, or raise "
                "optim.nonfinite_patience")

    def state_dict(self) -> dict:
        return {"skipped_total": self.skipped_total, "in_a_row": self.in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_total = int(state.get("skipped_total", 0))
        self.in_a_row = int(state.get("in_a_row", 0))
