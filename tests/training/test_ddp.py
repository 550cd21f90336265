"""A real 2-process DDP run (gloo on CPU) launched with torchrun, as a user would."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import torch

from tests.helpers import smoke_overrides


def test_torchrun_two_processes_train_and_validate(demo_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", "-m", "omnitrain", "train",
           *smoke_overrides(demo_dir, run, "trainer.devices=2", "strategy=ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 10
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("val/loss") for r in rows), "validation ran on both ranks and was logged"
