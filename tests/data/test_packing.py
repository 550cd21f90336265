"""Packing: several samples per row give the same per-sample losses as one per row."""

from __future__ import annotations

import torch

from omnitrain.data.collate import collate, pack_rows
from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.model.omni_model import OmniModel
from omnitrain.nn.varlen import DocAttention
from omnitrain.run_config import compose_config
from tests.data.test_sample_builder import samples_of
from tests.helpers import smoke_overrides

PAD = 256


def test_first_fit_decreasing():
    rows = pack_rows([5, 3, 8, 2, 9], pack_length=10)
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 8, 2, 9][i] for i in r) <= 10 for r in rows)
    assert len(rows) == 3
    assert pack_rows([20], pack_length=10) == [[0]]  # too long: a row of its own


def examples(cfg, demo_dir, n=8):
    import json

    builder = SampleBuilder.from_config(cfg)
    items = list(samples_of(sorted(demo_dir.glob("train-*.tar"))[0]).items())[:n]
    return [builder.build(json.loads(m["json"]), m.__getitem__, k) for k, m in items]


def test_packed_batch_layout(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    exs = examples(cfg, demo_dir)
    batch = collate(exs, PAD, pack_length=400)
    assert batch.input_ids.shape[0] < len(exs)
    for r in range(batch.input_ids.shape[0]):
        docs = batch.doc_ids[r]
        for d in docs.unique().tolist():
            if d == 0:
                continue
            pos = batch.position_ids[:, r, docs == d]
            assert int(pos.min()) == 0, "each sample's ids restart at 0"
    assert batch.speech_rows.numel() == len(exs)
    # every reply position points at a labelled token of its own sample
    for s, row in enumerate(batch.speech_rows.tolist()):
        positions = batch.reply_positions[s][batch.reply_mask[s]]
        assert (batch.labels[row, positions] != -100).all()


def test_packed_losses_equal_one_by_one(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    exs = examples(cfg, demo_dir)
    packed = collate(exs, PAD, pack_length=400)
    assert packed.input_ids.shape[0] < len(exs)
    got = model.per_sample_losses(packed)
    want_text, want_codec = {}, {}
    for e in exs:
        alone = model.per_sample_losses(collate([e], PAD))
        want_text[e.key] = alone["text"][0]
        want_codec[e.key] = alone["codec"][0]
    for i, key in enumerate(packed.keys):
        assert torch.allclose(got["text"][i], want_text[key], rtol=0, atol=2e-6), key  # measured 4.8e-7
        # measured 0.0 (bit-identical): the smallest sensible tolerance, 2 float32 ulps at a loss of ~4.6
        assert torch.allclose(got["codec"][i], want_codec[key], rtol=0, atol=1e-6), key


def test_varlen_path_equals_the_dense_mask(demo_dir, tmp_path):
    """The varlen (FlashAttention) pack/unpack, emulated on CPU, matches the dense mask."""
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    exs = examples(cfg, demo_dir)
    batch = collate(exs, PAD, pack_length=400)
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    with torch.no_grad():
        embeds = model.embed_inputs(batch).embeds
        dense = model.thinker(embeds, batch.position_ids, batch.doc_ids)
        model.thinker.cfg.attention = "varlen"
        varlen = model.thinker(embeds, batch.position_ids, batch.doc_ids)
    real = batch.doc_ids != 0
    assert torch.allclose(dense[real], varlen[real], rtol=0, atol=2e-6)  # measured 3.6e-7
    plan = DocAttention.build(batch.doc_ids, "varlen")
    assert plan.cu_seqlens.numel() == len(exs) + 1 and plan.emulate


def test_packing_through_the_pipeline(demo_dir, tmp_path):
    from omnitrain.data.pipeline import make_pipeline

    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "data.pack_length=512", "data.batch_size=6"))
    batch = next(iter(make_pipeline(cfg, "train", PAD)))
    assert len(batch.keys) == 6 and batch.input_ids.shape[0] < 6
    model = OmniModel(cfg)
    assert torch.isfinite(model(batch)["loss"])
