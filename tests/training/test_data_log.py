"""``data.log_samples`` in real training runs: each step's samples, by rank, and what a
resume (with another worker count, or after a crash) does to them. One pass's keys hold
every sample exactly once, however the run was cut."""

from __future__ import annotations

import json

import pytest

from omnitrain.run_config import compose_config
from omnitrain.training.run import train
from tests.data.uneven import SIZES, write_uneven
from tests.helpers import smoke_overrides

TOTAL = sum(SIZES)


def log_lines(run) -> list[dict]:
    return [json.loads(line) for line in (run / "data_log" / "rank-0.jsonl").read_text().splitlines()]


def run_cfg(demo_dir, shards, run, *extra):
    return compose_config(smoke_overrides(
        demo_dir, run, f"data.train_shards={shards}/train-*.tar", "data.log_samples=true",
        "trainer.limit_val_batches=0", "checkpoint.every_n_steps=3", "data.shuffle_buffer=8", *extra))


@pytest.mark.slow
@pytest.mark.parametrize("batching,first,second", [
    ((), ("data.num_workers=2",), ("data.num_workers=0",)),
    (("data.batching=tokens", "data.pack_length=256", "data.max_tokens=256", "data.rows_per_batch=2",
      "data.budget_buffer=8"), ("data.num_workers=0",), ("data.num_workers=2",)),
], ids=["samples-2to0-workers", "tokens-0to2-workers"])
def test_a_pass_resumed_with_another_worker_count_trains_every_sample_once(demo_dir, tmp_path, batching, first,
                                                                           second):
    shards, run = tmp_path / "shards", tmp_path / "run"
    write_uneven(demo_dir, shards)
    train(run_cfg(demo_dir, shards, run, *batching, *first, "trainer.max_steps=5", "data.epoch_batches=2"))
    lines = log_lines(run)
    assert [entry["step"] for entry in lines] == list(range(5))
    # the checkpoint of step 3 is the newest complete one at a crash after step 4 (delete the later ones)
    for later in ("step-000005.ckpt", "last.ckpt"):
        (run / "checkpoints" / later).unlink()
    (run / "checkpoints" / "last.ckpt").symlink_to("step-000003.ckpt")
    trainer, _ = train(run_cfg(demo_dir, shards, run, *batching, *second, "trainer.max_steps=40", "resume=last",
                               "data.epoch_batches=2"))
    lines = log_lines(run)
    steps = [entry["step"] for entry in lines]
    assert steps == list(range(len(steps))) and steps[-1] == trainer.global_step - 1  # steps 3, 4 again, once
    first_pass = [k for entry in lines if entry["epoch"] == 0 for k in entry["keys"]]
    assert len(first_pass) == len(set(first_pass)) == TOTAL
    assert all(len(entry["keys"]) + len(entry.get("repeats", [])) > 0 for entry in lines)
    second_pass = [k for entry in lines if entry["epoch"] == 1 for k in entry["keys"]]
    assert len(second_pass) == len(set(second_pass))
    order = [k for entry in lines for k in entry["keys"]]
    assert first_pass != order[TOTAL:2 * TOTAL]  # the next pass has its own order
