"""Training reads shards by URL: ``pipe:cat``, ``file://`` and a real HTTP server started
here each train 2 steps (the http shards' counts come from the index.json served beside
them, pipe: shards are counted once); ``s3://`` without s3fs stops before any work."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from omnitrain.cli import main
from omnitrain.run_config import compose_config
from omnitrain.training.run import train
from tests.data.test_shard_source import served  # noqa: F401 -- the HTTP server fixture
from tests.helpers import smoke_overrides

URLS = {
    "pipe": lambda folder, base: f"pipe:cat {folder}/train-{{000000..000002}}.tar",
    "file": lambda folder, base: f"file://{folder}/train-{{000000..000002}}.tar",
    "http": lambda folder, base: f"{base}/train-{{000000..000002}}.tar",
}


@pytest.mark.parametrize("kind", sorted(URLS))
def test_two_steps_from_shards_by_url(demo_dir, tmp_path, served, kind):  # noqa: F811
    for shard in [*demo_dir.glob("train-*.tar"), demo_dir / "index.json"]:
        shutil.copy(shard, tmp_path)  # the served folder
    url = URLS[kind](tmp_path, served)
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path / "run", f"data.train_shards={url}", "trainer.max_steps=2",
                                         "trainer.limit_val_batches=0", "data.log_samples=true"))
    trainer, _ = train(cfg)
    assert trainer.global_step == 2
    lines = (tmp_path / "run" / "data_log" / "rank-0.jsonl").read_text().splitlines()
    named = str(tmp_path) if kind == "file" else url.split("{")[0]  # file:// is read as the local path
    assert len(lines) == 2 and f'"{named}' in lines[0]  # keys name the shard as it is read


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_s3fs_is_a_clear_error_before_any_work(tmp_path, capsys):
    code = main(["train", "recipe=smoke", "data.train_shards=s3://bucket/train-{000000..000003}.tar",
                 f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "s3fs" in err and "pip install s3fs" in err
    assert not (tmp_path / "run").exists()
