"""Token-budget batching: rows filled longest first, little padding, a fixed step count."""

from __future__ import annotations

import pytest
import torch

from omnitrain.config.validate import ConfigError
from omnitrain.data.budget import TokenBudgetBatches, padding_waste
from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides

TOKENS = ("data.batching=tokens", "data.pack_length=256", "data.max_tokens=256", "data.rows_per_batch=2",
          "data.budget_buffer=24")


def test_padding_waste_under_five_percent_on_demo_data(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, *TOKENS, "data.epoch_batches=20"))
    batches = list(make_pipeline(cfg, "train", 256))
    assert len(batches) == 20  # the epoch length is fixed, whatever each batch holds
    waste = sum(b.input_ids.numel() - b.num_tokens for b in batches) / sum(b.input_ids.numel() for b in batches)
    assert waste < 0.05, f"padding waste {waste:.1%}"
    assert all(b.input_ids.shape[0] <= 2 and b.input_ids.shape[1] <= 256 for b in batches)
    # the plain one-sample-per-row batching on the same data, for contrast
    plain = list(make_pipeline(compose_config(smoke_overrides(demo_dir, tmp_path, "data.epoch_batches=5")),
                               "train", 256))
    assert sum(map(padding_waste, plain)) / len(plain) > waste


def test_no_sample_waits_forever():
    class Ex:
        def __init__(self, n, key):
            self.n, self.key = n, key

        def __len__(self):
            return self.n

    # one mid-size sample among many that fill the rows exactly: patience lets it through
    stream = [Ex(60, "mid")] + [Ex(50, f"s{i}") for i in range(200)]
    batcher = TokenBudgetBatches(rows=1, row_length=100, buffer=8, collate=lambda xs, rows: [x.key for x in xs],
                                 patience=3)
    seen = []
    for i, keys in enumerate(batcher(iter(stream))):
        seen += keys
        if "mid" in keys:
            assert i <= 4
            break
    assert "mid" in seen


def test_budget_batch_trains(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, *TOKENS))
    batch = next(iter(make_pipeline(cfg, "train", 256)))
    assert len(batch.keys) > 2  # more samples than rows: packed
    loss = OmniModel(cfg)(batch)["loss"]
    assert torch.isfinite(loss)


@pytest.mark.parametrize("overrides,needle", [
    (["data.batching=tokens"], "needs data.pack_length"),
    (["data.batching=tokens", "data.pack_length=100"], "exceeds data.pack_length"),
    (["data.batching=bytes"], r"data.batching='bytes': must be one of \['samples', 'tokens'\]"),
])
def test_budget_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        compose_config(overrides)
