"""Token-budget batching: rows filled longest first, little padding, no sample left waiting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnitrain.config.validate import ConfigError
from omnitrain.data.budget import padding_waste, token_batches
from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config
from tests.helpers import SMALL_DEMO, smoke_overrides

TOKENS = ("data.batching=tokens", "data.pack_length=256", "data.max_tokens=256", "data.rows_per_batch=2",
          "data.budget_buffer=24")


def test_padding_waste_under_five_percent_on_demo_data(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, *TOKENS))
    batches = list(make_pipeline(cfg, "train", 256))
    keys = [k for b in batches for k in b.keys]
    assert len(keys) == len(set(keys)) == SMALL_DEMO.train  # one pass: every sample, once
    waste = sum(b.input_ids.numel() - b.num_tokens for b in batches) / sum(b.input_ids.numel() for b in batches)
    assert waste < 0.05, f"padding waste {waste:.1%}"
    assert all(b.input_ids.shape[0] <= 2 and b.input_ids.shape[1] <= 256 for b in batches)
    # the plain one-sample-per-row batching on the same data, for contrast
    plain = list(make_pipeline(compose_config(smoke_overrides(demo_dir, tmp_path)), "train", 256))
    assert sum(map(padding_waste, plain)) / len(plain) > waste


def test_no_sample_waits_forever():
    # one mid-size sample among many that fill the rows exactly: patience lets it through
    lengths = np.array([60] + [50] * 200)
    batches = token_batches(np.arange(len(lengths)), lengths, rows=1, row_length=100, buffer=8, patience=3)
    first = next(i for i, (ids, _) in enumerate(batches) if 0 in ids)
    assert first <= 4
    assert sorted(i for ids, _ in batches for i in ids) == list(range(len(lengths)))  # every sample, once
    assert all(sum(lengths[ids[p]] for p in row) <= 100 for ids, rows in batches for row in rows)


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
