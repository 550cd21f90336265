"""The training stream is a function of (epoch, position): a loader started at global
batch b yields what an uninterrupted one yields from b on, with and without workers."""

from __future__ import annotations

from omnitrain.data.datamodule import OmniDataModule
from omnitrain.data.pipeline import make_pipeline
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides

EPOCH = 4


def _cfg(demo_dir, tmp_path, workers=0):
    return compose_config(smoke_overrides(demo_dir, tmp_path, f"data.epoch_batches={EPOCH}", "data.batch_size=2",
                                          f"data.num_workers={workers}"))


def _keys(epoch) -> list[tuple[str, ...]]:
    return [tuple(b.keys) for b in epoch]


def test_pipeline_started_mid_epoch_continues_the_stream(demo_dir, tmp_path):
    cfg = _cfg(demo_dir, tmp_path)
    stream = make_pipeline(cfg, "train", 256)
    full = [_keys(stream) for _ in range(3)]
    assert len(full[0]) == EPOCH and full[0] != full[1] != full[2]
    resumed = make_pipeline(cfg, "train", 256, start_batch=EPOCH + 3)
    assert _keys(resumed) == full[1][3:]
    assert _keys(resumed) == full[2]
    at_boundary = make_pipeline(cfg, "train", 256, start_batch=2 * EPOCH)
    assert _keys(at_boundary) == full[2]


def test_loader_with_two_workers_resumes_each_workers_share(demo_dir, tmp_path):
    data = OmniDataModule(_cfg(demo_dir, tmp_path, workers=2))
    loader = data._loader("train", 2)
    full = [_keys(loader) for _ in range(2)]
    assert len(full[0]) == EPOCH
    for start in (1, 3):  # batch i comes from worker i % 2: skipping must be per worker
        resumed = data._loader("train", 2, start_batch=EPOCH + start)
        assert _keys(resumed) == full[1][start:], start
