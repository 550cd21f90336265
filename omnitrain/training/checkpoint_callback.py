"""Step checkpoints every N steps, keeping the newest ``checkpoint.keep``.

Lightning ranks checkpoints only by a monitored metric (``save_top_k > 1`` needs one),
and ranking by the logged ``step`` changed which weights a multi-process ZeRO resume
found under a step's name. "Keep the newest N" needs no ranking: after each save,
older ``step-*.ckpt`` files or ZeRO/FSDP folders beyond the newest N are removed
(``last.ckpt`` is never touched). Overrides ``ModelCheckpoint._save_checkpoint``, the
one place every save passes (lightning is pinned exactly in pyproject.toml).
"""

from __future__ import annotations

import re
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

STEP_NAME = re.compile(r"step-(\d+)\.ckpt$")


class StepCheckpoints(ModelCheckpoint):
    def __init__(self, dirpath: str, every_n_steps: int, keep: int, save_last: bool) -> None:
        super().__init__(
            dirpath=dirpath, filename="step-{step:06d}", auto_insert_metric_name=False,
            every_n_train_steps=every_n_steps, save_top_k=0 if keep == 0 else -1, save_last=save_last,
            # a resumed run must overwrite last.ckpt, not write last-v1.ckpt beside it
            enable_version_counter=False,
        )
        self.keep = keep

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if self.keep > 0:
            for old in self.step_checkpoints()[: -self.keep]:
                trainer.strategy.remove_checkpoint(old)

    def step_checkpoints(self) -> list[Path]:
        """``step-*.ckpt`` under ``dirpath``, oldest first."""
        found = [(int(m.group(1)), p) for p in Path(self.dirpath).glob("step-*.ckpt")
                 if (m := STEP_NAME.search(p.name))]
        return [p for _, p in sorted(found)]
