"""Step checkpoints every N steps and at the end, whole or absent, the newest
``checkpoint.keep`` kept.

Each save goes to ``step-N.ckpt.partial`` in the checkpoint folder and becomes
``step-N.ckpt`` only once complete (``omnitrain.checkpoints.atomic``); ``last.ckpt`` then
points to it. Overrides ``ModelCheckpoint._save_checkpoint``, the one place every save
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

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        folder = Path(self.dirpath)
        if trainer.is_global_zero and folder.is_dir():
            clean_leftovers(folder)  # what a killed save left behind
            if self.overwrite:  # the user asked for a fresh start over an old run
                for old in [*step_checkpoints(folder), folder / LAST]:
                    remove(old)
        trainer.strategy.barrier("omnitrain_checkpoint_setup")

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        final = Path(filepath)
        partial = final.with_name(final.name + PARTIAL)
        trainer.save_checkpoint(str(partial), self.save_weights_only)  # every rank writes its shard
        trainer.strategy.barrier("omnitrain_checkpoint_written")
        if trainer.is_global_zero:
            finish(partial, final)
            if self.link_last:
                point_last(final.parent, final)
            if self.keep > 0:
                for old in step_checkpoints(final.parent)[: -self.keep]:
                    trainer.strategy.remove_checkpoint(old)
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
        trainer.strategy.barrier("omnitrain_checkpoint_finished")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = str(final)

    def on_train_end(self, trainer, pl_module) -> None:
        """The last step is always saved, even between two ``every_n_steps``."""
        if trainer.global_step > 0 and self._last_global_step_saved != trainer.global_step:
            self._save_checkpoint(trainer, self.format_checkpoint_name(self._monitor_candidates(trainer)))
