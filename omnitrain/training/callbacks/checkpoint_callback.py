"""Step checkpoints every N steps and at the end, whole or absent, the newest
``checkpoint.keep`` kept.

Each save goes to ``step-N.ckpt.partial`` in the checkpoint folder and becomes
``step-N.ckpt`` only once complete (``omnitrain.checkpoints.atomic``); ``last.ckpt`` then
points to it. A save at a step's end completes once that step's metrics are logged and
flushed, so a resumed run's metrics.csv has every step. Overrides ``ModelCheckpoint._save_checkpoint``, the one place every save
passes (lightning is pinned exactly in pyproject.toml); Lightning's own ``last`` copy is
off. "Keep the newest N" needs no monitored metric: older step checkpoints beyond N are
removed after each save (ranking by the logged step changed which weights a multi-process
ZeRO resume found under a step's name).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from omnitrain.checkpoints.atomic import (
    LAST,
    PARTIAL,
    clean_leftovers,
    finish,
    point_last,
    remove,
    retire,
    step_checkpoints,
)


class StepCheckpoints(ModelCheckpoint):
    def __init__(self, dirpath: str, every_n_steps: int, keep: int, save_last: bool, overwrite: bool = False) -> None:
        """``overwrite``: a fresh run that replaces the run_dir's checkpoints (overwrite=true)."""
        super().__init__(
            dirpath=dirpath, filename="step-{step:06d}", auto_insert_metric_name=False,
            every_n_train_steps=every_n_steps, save_top_k=0 if keep == 0 else -1, save_last=False,
            enable_version_counter=False,
        )
        self.keep, self.link_last, self.overwrite = keep, save_last, overwrite
        self._defer = False  # inside on_train_batch_end: complete the save at the next hook
        self._pending: tuple[Path, Path] | None = None  # (written partial, its final name)

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        folder = Path(self.dirpath)
        if trainer.is_global_zero and folder.is_dir():
            clean_leftovers(folder)  # what a killed save left behind
            if self.overwrite:  # the user asked for a fresh start over an old run
                for old in [*step_checkpoints(folder), folder / LAST]:
                    remove(old)
        trainer.strategy.barrier("omnitrain_checkpoint_setup")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """A save here completes at the next hook: Lightning logs this step's metrics only
        after the callbacks, and a checkpoint must not exist before the rows it continues."""
        self._defer = True
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        finally:
            self._defer = False

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        self.complete_pending(trainer)
        final = Path(filepath)
        partial = final.with_name(final.name + PARTIAL)
        trainer.save_checkpoint(str(partial), self.save_weights_only)  # every rank writes its shard
        trainer.strategy.barrier("omnitrain_checkpoint_written")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = str(final)
        self._pending = (partial, final)
        if not self._defer:
            self.complete_pending(trainer)

    def complete_pending(self, trainer) -> None:
        """Flush the loggers, then make the written checkpoint complete and ``last``. Every
        rank's shard was written before ``_pending`` was set: no barrier needed (this also
        runs in ``on_exception``, where other ranks may be gone)."""
        pending, self._pending = self._pending, None
        if pending is None or not trainer.is_global_zero:
            return
        partial, final = pending
        for logger in trainer.loggers:  # metrics up to this step reach disk before the checkpoint
            logger.save()               # exists, so a kill -9 after it loses no logged row
        finish(partial, final)
        if self.link_last:
            point_last(final.parent, final)
        if self.keep > 0:
            for old in step_checkpoints(final.parent)[: -self.keep]:
                retire(old)
        for logger in trainer.loggers:
            logger.after_save_checkpoint(self)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.complete_pending(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.complete_pending(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.complete_pending(trainer)
        super().on_exception(trainer, pl_module, exception)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.complete_pending(trainer)
        super().teardown(trainer, pl_module, stage)

    def on_train_end(self, trainer, pl_module) -> None:
        """The last step is always saved, even between two ``every_n_steps``."""
        self.complete_pending(trainer)
        if trainer.global_step > 0 and self._last_global_step_saved != trainer.global_step:
            self._save_checkpoint(trainer, self.format_checkpoint_name(self._monitor_candidates(trainer)))
