"""``checkpoint.keep=N`` leaves the N newest step checkpoints of a real run, and
``last.ckpt`` points to the newest of them."""

from __future__ import annotations

import os

from omnitrain.checkpoints import open_checkpoint
from omnitrain.cli import main
from tests.helpers import smoke_overrides


def test_keep_leaves_the_newest_step_checkpoints(demo_dir, tmp_path):
    """A save at every one of 5 steps with keep=2: steps 1-3 are deleted, 4 and 5 stay."""
    run = tmp_path / "run"
    assert main(["train", *smoke_overrides(
        demo_dir, run, "trainer.max_steps=5", "checkpoint.every_n_steps=1", "checkpoint.keep=2",
        "trainer.limit_val_batches=0")]) == 0
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step-000004.ckpt", "step-000005.ckpt"]
    assert os.readlink(folder / "last.ckpt") == "step-000005.ckpt"
    assert [open_checkpoint(folder / f"step-{s:06d}.ckpt").step for s in (4, 5)] == [4, 5]
