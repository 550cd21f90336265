"""Shards written before per-sample lengths and the stream state existed still train.

``fixtures/shards_307b90f`` was written by ``omnitrain data demo`` at commit 307b90f (text
and image samples; its ``index.json`` has counts only): sample batching plans from the
counts, token batching measures each sample's length once (cached), both train 2 steps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omnitrain.run_config import compose_config
from omnitrain.training.run import train
from tests.helpers import smoke_overrides

OLD = Path(__file__).parent / "fixtures" / "shards_307b90f"


@pytest.mark.parametrize("batching", [(), ("data.batching=tokens", "data.pack_length=256", "data.max_tokens=256",
                                           "data.rows_per_batch=2")], ids=["samples", "tokens"])
def test_shards_of_an_earlier_version_train(tmp_path, batching):
    shards = tmp_path / "shards"
    shutil.copytree(OLD, shards)  # a new path: nothing cached for them
    cfg = compose_config(smoke_overrides(shards, tmp_path / "run", "trainer.max_steps=2", "trainer.limit_val_batches=1",
                                         "data.log_samples=true", "data.batch_size=2", *batching))
    trainer, _ = train(cfg)
    assert trainer.global_step == 2
    log = (tmp_path / "run" / "data_log" / "rank-0.jsonl").read_text().splitlines()
    assert len(log) == 2 and all('"keys": ["' in line for line in log)


SPOKEN = Path(__file__).parent / "fixtures" / "spoken_4a780c1"


def test_spoken_replies_written_before_code_groups_train_as_one_group(tmp_path):
    """``fixtures/spoken_4a780c1`` was written by ``make_demo`` at 4a780c1 (text prompts with
    spoken replies; codes (n,), from before codecs declared code groups): the codes load as
    one group and the Talker trains on them."""
    import csv
    import math

    shards = tmp_path / "shards"
    shutil.copytree(SPOKEN, shards)
    cfg = compose_config(smoke_overrides(shards, tmp_path / "run", "trainer.max_steps=2", "trainer.limit_val_batches=1",
                                         "data.batch_size=2", "trainer.log_every_n_steps=1"))
    trainer, _ = train(cfg)
    assert trainer.global_step == 2
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        codec = [float(r["train/codec"]) for r in csv.DictReader(f) if r.get("train/codec")]
    assert len(codec) == 2 and all(math.isfinite(c) and c > 0 for c in codec)  # real codes, not a dummy's 0
