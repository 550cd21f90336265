"""A non-finite loss skips its optimizer step (weights and checkpoints stay good, the
samples are named); ``optim.nonfinite_patience`` in a row stop the run non-zero without
writing a checkpoint. Under every strategy and precision a user may pick, one process
each: the NaN is injected into the real training step's loss."""

from __future__ import annotations

import csv
import os

import pytest
import torch

from omnitrain.checkpoints import open_checkpoint
from omnitrain.cli import main
from omnitrain.training.stages.module import OmniModule
from tests.helpers import smoke_overrides

pytestmark = pytest.mark.slow

NAN_AT = {2, 3, 4}  # global steps whose loss becomes NaN: 2 and 3 are skipped, 4 stops the run


def weights(path) -> dict[str, torch.Tensor]:
    reader = open_checkpoint(path)
    out = {name: torch.empty(spec.numel, dtype=spec.dtype) for name, spec in reader.tensors().items()}

    def sink(name: str, offset: int, piece: torch.Tensor) -> None:
        out[name][offset:offset + piece.numel()] = piece.reshape(-1)

    reader.stream(sink)
    return out


@pytest.fixture
def nan_at_some_steps(monkeypatch):
    original = OmniModule.training_step

    def poisoned(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.trainer.global_step in NAN_AT else loss

    monkeypatch.setattr(OmniModule, "training_step", poisoned)


@pytest.mark.parametrize("strategy,precision", [
    ("auto", "32-true"), ("auto", "bf16-mixed"), ("deepspeed_zero2", "bf16-mixed"),
    ("deepspeed_zero3", "32-true"), ("fsdp", "bf16-mixed"),
])
def test_nonfinite_steps_are_skipped_then_the_run_stops(strategy, precision, nan_at_some_steps, demo_dir,
                                                        tmp_path, capsys, caplog):
    run = tmp_path / "run"
    code = main(["train", *smoke_overrides(
        demo_dir, run, f"strategy={strategy}", f"trainer.precision={precision}", "trainer.max_steps=10",
        "checkpoint.every_n_steps=1", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0")])
    err = capsys.readouterr().err
    assert code == 3, err[-3000:]
    assert "3 optimizer steps in a row had a non-finite loss or gradient (the last at step 5" in err
    assert "stopped without saving" in err and "optim.nonfinite_patience" in err
    skipped = [r.getMessage() for r in caplog.records if "skipped: non-finite" in r.getMessage()]
    assert len(skipped) == 3 and all("samples: " in m and "(no keys)" not in m for m in skipped)
    # each skipped step still counts (global steps 3, 4, 5 after steps 2, 3, 4) and is counted
    for message, (step, count) in zip(skipped, [(3, 1), (4, 2), (5, 3)], strict=True):
        assert message.startswith(f"step {step} skipped: non-finite loss or gradient ({count} in a row, {count} in all)")
    with open(run / "csv" / "metrics.csv") as f:
        logged = {int(r["step"]): float(r["train/nonfinite_skipped"]) for r in csv.DictReader(f)
                  if r.get("train/nonfinite_skipped")}
    assert logged == {2: 1.0, 3: 2.0}  # the third skip stops the run before its row is written

    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == [f"step-{s:06d}.ckpt" for s in (1, 2, 3, 4)]
    good, after = weights(ckpts / "step-000002.ckpt"), weights(ckpts / "step-000004.ckpt")
    first = weights(ckpts / "step-000001.ckpt")
    assert all(torch.isfinite(t).all() for t in after.values())
    assert all(torch.equal(good[n], after[n]) for n in good), "a skipped step changed the weights"
    assert not all(torch.equal(first[n], good[n]) for n in good), "the good steps trained"
    assert os.readlink(ckpts / "last.ckpt") == "step-000004.ckpt"  # the last good save, not the stop
    assert [open_checkpoint(ckpts / f"step-{s:06d}.ckpt").step for s in (1, 2, 3, 4)] == [1, 2, 3, 4]
