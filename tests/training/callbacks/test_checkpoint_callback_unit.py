"""StepCheckpoints in a real tiny Lightning run (CPU, real files in tmp_path): saves every
N steps and at the end, keeps the newest ``keep``, points ``last.ckpt`` at the newest, and
makes a save complete only after that step's metrics were flushed. Fast stand-in for
test_checkpoint_keep.py (which runs the whole CLI)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

from omnitrain.training.callbacks.checkpoint_callback import StepCheckpoints


class Tiny(L.LightningModule):
    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))
        self.fail_at = fail_at
        self.at_train_end: list[str] = []  # the checkpoint folder when training ends

        self.at_validation: list[list[str]] = []  # the checkpoint folder as each validation starts

    def folder(self) -> list[str]:
        return sorted(p.name for p in Path(self.trainer.checkpoint_callback.dirpath).iterdir())

    def on_train_end(self):
        self.at_train_end = self.folder()

    def on_validation_start(self):
        self.at_validation.append(self.folder())

    def validation_step(self, batch, batch_idx):
        return None

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("boom")
        loss = (self.w * batch).sum()
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recorder(Logger):
    """Records, in order, each step whose metrics were logged, each flush, and each
    checkpoint the callback reports, with the files of the folder at that moment;
    ``fail_at``: logging that step's metrics raises."""

    def __init__(self, folder, fail_at: int | None = None) -> None:
        super().__init__()
        self.folder, self.events, self.fail_at = folder, [], fail_at

    name = "recorder"
    version = 0

    def log_metrics(self, metrics, step=None):
        if step == self.fail_at:
            raise RuntimeError("logger down")
        self.events.append(("metrics", step))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def save(self):
        self.events.append(("save", None))

    def after_save_checkpoint(self, checkpoint_callback):
        names = sorted(p.name for p in self.folder.iterdir())
        self.events.append(("checkpoint", os.path.basename(checkpoint_callback._last_checkpoint_saved), names))


def fit(folder, steps: int, every: int, keep: int, save_last: bool = True, overwrite: bool | None = None,
        module: Tiny | None = None, logger: Logger | bool = False, barriers: list | None = None,
        validate_every: int | None = None) -> StepCheckpoints:
    options = {} if overwrite is None else {"overwrite": overwrite}
    callback = StepCheckpoints(str(folder), every, keep, save_last, **options)
    validation = {"val_check_interval": validate_every, "num_sanity_val_steps": 0} if validate_every else {
        "limit_val_batches": 0}
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, callbacks=[callback], logger=logger,
                        log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False, **validation)
    if barriers is not None:  # the names every rank waits at
        trainer.strategy.barrier = barriers.append
    loader = torch.utils.data.DataLoader([torch.tensor([1.0, 2.0])] * steps, batch_size=None)
    trainer.fit(module or Tiny(), loader, loader if validate_every else None)
    return callback


def step_of(path) -> int:
    return torch.load(path, weights_only=False)["global_step"]


def test_every_n_steps_and_the_end_keep_the_newest(tmp_path):
    """every 2 of 5 steps, keep 2: saves at 2, 4 and the last step 5; step 2 is removed."""
    folder = tmp_path / "ckpt"
    fit(folder, steps=5, every=2, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step-000004.ckpt", "step-000005.ckpt"]
    assert os.readlink(folder / "last.ckpt") == "step-000005.ckpt"
    assert [step_of(folder / f"step-{s:06d}.ckpt") for s in (4, 5)] == [4, 5]


def test_keep_all_without_last(tmp_path):
    """keep=-1 keeps every save; save_last=False writes no last.ckpt; a run that ends on a
    save step is not saved twice."""
    folder = tmp_path / "ckpt"
    fit(folder, steps=4, every=2, keep=-1, save_last=False)
    assert sorted(p.name for p in folder.iterdir()) == ["step-000002.ckpt", "step-000004.ckpt"]


def test_keep_one(tmp_path):
    folder = tmp_path / "ckpt"
    fit(folder, steps=3, every=1, keep=1)
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step-000003.ckpt"]


def test_a_save_completes_after_its_steps_metrics_are_flushed(tmp_path):
    """A kill right after a checkpoint appears must lose no logged row: step 2's metrics
    (logged at step index 1) and a flush come before step-000002.ckpt exists."""
    folder = tmp_path / "ckpt"
    recorder = Recorder(folder)
    fit(folder, steps=3, every=2, keep=-1, logger=recorder)
    steps_and_saves = [e[:2] for e in recorder.events if e[0] != "save"]
    assert steps_and_saves == [("metrics", 0), ("metrics", 1), ("checkpoint", "step-000002.ckpt"),
                               ("metrics", 2), ("checkpoint", "step-000003.ckpt")]
    saves = [e for e in recorder.events if e[0] == "checkpoint"]
    assert [e[2] for e in saves] == [["last.ckpt", "step-000002.ckpt"],
                                     ["last.ckpt", "step-000002.ckpt", "step-000003.ckpt"]]


def test_a_crash_completes_the_pending_save(tmp_path):
    """The step-2 save is written at step 2's end and waits for its metrics; logging them
    fails: the written checkpoint is still made complete and last, not left as a .partial."""
    folder = tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="logger down"):
        fit(folder, steps=5, every=2, keep=-1, logger=Recorder(folder, fail_at=1))
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step-000002.ckpt"]
    assert os.readlink(folder / "last.ckpt") == "step-000002.ckpt"


@pytest.mark.parametrize("steps", [3, 4])
def test_the_last_step_is_complete_when_training_ends(tmp_path, steps):
    """Whether the last step is a save step (4) or not (3, saved by on_train_end), its
    checkpoint is complete and last by the time the module's on_train_end runs."""
    module = Tiny()
    fit(tmp_path / "ckpt", steps=steps, every=2, keep=-1, module=module)
    assert module.at_train_end[0] == "last.ckpt" and module.at_train_end[-1] == f"step-{steps:06d}.ckpt"


def test_a_save_is_complete_before_validation_starts(tmp_path):
    """Validation after step 2 (a save step) starts with step 2's checkpoint complete, so a
    crash or a kill during a long validation cannot lose it."""
    module = Tiny()
    fit(tmp_path / "ckpt", steps=4, every=2, keep=-1, module=module, validate_every=2)
    assert module.at_validation[0] == ["last.ckpt", "step-000002.ckpt"]


def test_every_rank_waits_after_setup_and_after_each_write(tmp_path):
    barriers = []
    fit(tmp_path / "ckpt", steps=2, every=1, keep=-1, barriers=barriers)
    ours = [b for b in barriers if b.startswith("omnitrain")]
    assert ours == ["omnitrain_checkpoint_setup"] + ["omnitrain_checkpoint_written"] * 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_setup_cleans_leftovers_and_overwrite_removes_old_checkpoints(tmp_path, overwrite):
    """A killed save's .partial is always removed; an old run's step checkpoints and last
    stay (a resume needs them) unless overwrite=true asked for a fresh start."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "step-000009.ckpt").write_bytes(b"old")
    os.symlink("step-000009.ckpt", folder / "last.ckpt")
    (folder / "step-000010.ckpt.partial").write_bytes(b"half")
    fit(folder, steps=1, every=5, keep=-1, save_last=False, overwrite=overwrite or None)  # default: False
    old = [] if overwrite else ["last.ckpt", "step-000009.ckpt"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*old, "step-000001.ckpt"])
