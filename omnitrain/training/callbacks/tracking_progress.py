"""The training progress bar counts the whole run, so its ETA is the run's.

Lightning's bar restarts with every epoch, and omnitrain's epochs are pseudo-epochs of
``data.epoch_batches`` batches over an endless stream: its ETA said when the next 100
batches end. Here the bar's total is ``trainer.max_steps`` optimizer steps (in batches:
times ``accumulate_grad_batches``), a resumed run starts at the step it resumes from
(the rate, and so the ETA, counts only the batches of this process), and the
description keeps the epoch number.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


def run_total_batches(trainer) -> int | None:
    """Batches of the whole run (``max_steps`` x accumulation), None without ``max_steps``."""
    steps = int(trainer.max_steps or -1)
    return steps * int(trainer.accumulate_grad_batches) if steps > 0 else None


class RunProgressBar(TQDMProgressBar):
    def _span_run(self, trainer) -> bool:
        """Make the training bar span the run (once per process); False: Lightning's bar."""
        total = run_total_batches(trainer)
        if total is None or self._leave:
            return False
        bar = self.train_progress_bar
        if bar.total != total:
            done = int(trainer.global_step) * int(trainer.accumulate_grad_batches)
            bar.reset(total=total)
            bar.initial = bar.n = done
            bar.set_description(f"Epoch {trainer.current_epoch}")
        return True

    def on_train_start(self, trainer, *args) -> None:
        # a run resumed at an epoch's end starts without on_train_epoch_start
        super().on_train_start(trainer, *args)
        self._span_run(trainer)

    def on_train_epoch_start(self, trainer, *args) -> None:
        if not self._span_run(trainer):
            super().on_train_epoch_start(trainer, *args)
            return
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        total = run_total_batches(trainer)
        if total is None or self._leave:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        accumulate = int(trainer.accumulate_grad_batches)
        n = min(total, int(trainer.global_step) * accumulate + (batch_idx + 1) % accumulate)
        bar = self.train_progress_bar
        if bar is not None and self._should_update(n, total) and not bar.disable:
            bar.n = n
            bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))
