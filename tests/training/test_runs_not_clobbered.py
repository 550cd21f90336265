"""A run's checkpoints and metrics are never lost to the next command: a fresh run into a
run_dir with checkpoints is refused (resume=last or overwrite=true say how to go on),
and a resumed run keeps the metrics logged before its checkpoint and appends."""

from __future__ import annotations

import csv

from omnitrain.cli import main
from tests.helpers import smoke_overrides


def steps_logged(run) -> list[int]:
    with open(run / "csv" / "metrics.csv") as f:
        return sorted({int(float(r["step"])) for r in csv.DictReader(f) if r.get("train/loss")})


def test_fresh_run_into_a_used_run_dir_is_refused_then_resumed_or_overwritten(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = smoke_overrides(demo_dir, run, "trainer.max_steps=4", "checkpoint.every_n_steps=2",
                           "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0")
    assert main(["train", *args]) == 0
    before = (run / "checkpoints" / "step-000004.ckpt").read_bytes()
    capsys.readouterr()
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "resume=last" in err and "overwrite=true" in err
    assert (run / "checkpoints" / "step-000004.ckpt").read_bytes() == before and steps_logged(run) == [0, 1, 2, 3]

    # resuming from step 2 keeps the metrics of steps 0-1 and logs 2-5 again
    assert main(["train", *args, "trainer.max_steps=6", f"resume={run}/checkpoints/step-000002.ckpt"]) == 0
    assert steps_logged(run) == [0, 1, 2, 3, 4, 5]

    assert main(["train", *args, "overwrite=true", "trainer.max_steps=2"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "step-000002.ckpt"]
    assert steps_logged(run) == [0, 1]
