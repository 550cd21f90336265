"""Save -> resume continues the identical loss curve (fp32, one process), both from a
checkpoint in the middle of a data epoch and from one at an epoch's end: the data
stream and the RNG resume with the global step. Resuming into a different model shape
fails before training."""

from __future__ import annotations

import csv

import pytest

from omnitrain.cli import main
from tests.helpers import smoke_overrides

EXTRA = ("data.epoch_batches=4", "trainer.max_steps=8", "checkpoint.every_n_steps=2",
         "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0", "perf.peak_tflops=0.5")


def losses(run) -> dict[int, float]:
    with open(run / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


@pytest.fixture(scope="module")
def full_run(demo_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("full")
    assert main(["train", *smoke_overrides(demo_dir, run, *EXTRA)]) == 0
    return run


@pytest.mark.parametrize("step", [2, 4], ids=["mid-epoch", "epoch-end"])
def test_resumed_run_continues_the_identical_curve(full_run, demo_dir, tmp_path, step):
    ckpt = full_run / "checkpoints" / f"step-{step:06d}.ckpt"
    assert main(["train", *smoke_overrides(demo_dir, tmp_path, *EXTRA, f"resume={ckpt}")]) == 0
    full, resumed = losses(full_run), losses(tmp_path)
    assert sorted(resumed) == list(range(step, 8))
    assert {s: full[s] for s in resumed} == resumed


def test_resume_into_a_different_model_shape_fails_before_training(full_run, demo_dir, tmp_path, capsys):
    ckpt = full_run / "checkpoints" / "step-000004.ckpt"
    code = main(["train", *smoke_overrides(demo_dir, tmp_path, *EXTRA, "thinker.ffn_dim=96", f"resume={ckpt}")])
    err = capsys.readouterr().err
    assert code == 2
    assert "different shape" in err and "thinker.ffn_dim: 64 -> 96" in err
    assert "mlp.gate_proj.weight is (64, 32) in the checkpoint but (96, 32)" in err
    assert not (tmp_path / "csv").exists(), "nothing was started"


def test_resume_a_single_file_with_a_sharded_strategy_fails_early(full_run, demo_dir, tmp_path, capsys):
    ckpt = full_run / "checkpoints" / "step-000004.ckpt"
    code = main(["train", *smoke_overrides(demo_dir, tmp_path, *EXTRA, "strategy=deepspeed_zero2", f"resume={ckpt}")])
    assert code == 2 and "cannot be resumed with strategy=deepspeed" in capsys.readouterr().err


def test_throughput_and_mfu_are_logged_every_step(full_run):
    with open(full_run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("perf/mfu")]
    assert len(rows) == 8
    for r in rows:
        mfu, tflops = float(r["perf/mfu"]), float(r["perf/tflops_per_device"])
        assert 0 < mfu < 1 and tflops == 0.5 * mfu  # peak 0.5 (a power of 2): measured exact
        assert float(r["perf/tokens_per_s"]) > float(r["perf/samples_per_s"]) > 0
