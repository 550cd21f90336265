"""Bring-your-own codec: a locally created codec checkpoint (torch.export programs) is
configured by path, builds shards whose tokens are then used as they are, trains, and
travels inside the exported bundle."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from omnitrain.bundle import export_bundle, load_bundle
from omnitrain.cli import main
from omnitrain.config.validate import ConfigError
from omnitrain.data.build.demo import make_sample
from omnitrain.data.build.shard_writer import ShardWriter
from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.omni_model import OmniModel
from omnitrain.registry import build
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides

HOP, VOCAB = 640, 24


class TinyVQEncoder(nn.Module):
    """One strided conv per 40 ms frame, then the nearest of VOCAB codebook vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, HOP, stride=HOP)
        self.codebook = nn.Parameter(torch.randn(VOCAB, 8))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = self.conv(wave[None, None])[0].T
        return torch.cdist(frames, self.codebook).argmin(-1)


class TinyVQDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.up = nn.ConvTranspose1d(8, 1, HOP, stride=HOP)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.up(self.embed(tokens).T[None])[0, 0]


def export_tiny_codec(out, **meta):
    """What a user does once, locally: export a trained codec's encoder and decoder into
    ``out`` with its codec.json (``meta``: extra keys, e.g. the plugin that reads it)."""
    torch.manual_seed(0)
    n = torch.export.Dim("n", min=1, max=1_000_000)
    enc = torch.export.export(TinyVQEncoder().eval(), (torch.randn(HOP * 25),), dynamic_shapes=({0: HOP * n},))
    dec = torch.export.export(TinyVQDecoder().eval(), (torch.randint(0, VOCAB, (25,)),), dynamic_shapes=({0: n},))
    torch.export.save(enc, str(out / "encode.pt2"))
    torch.export.save(dec, str(out / "decode.pt2"))
    (out / "codec.json").write_text(json.dumps({**meta, "vocab_size": VOCAB, "sample_rate": 16000, "hop_length": HOP}))
    return out


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    return export_tiny_codec(tmp_path_factory.mktemp("my_codec"))


def test_local_codec_builds_shards_whose_tokens_are_used_as_they_are(codec_dir, tmp_path):
    import random

    overrides = ["codec=exported", f"codec.path={codec_dir}"]
    cfg = compose_config(smoke_overrides(tmp_path, tmp_path / "run", *overrides))
    codec = build("codec", cfg.codec)
    assert codec.vocab_size == VOCAB and codec.frame_rate == 25
    wave = torch.randn(16000)
    assert codec.encode(wave).shape == (25,) and codec.decode(codec.encode(wave)).shape == (16000,)
    # a shard built with the codec; one sample carries tokens edited after the fact
    rng = random.Random(0)
    with ShardWriter(tmp_path / "train-000000.tar") as w:
        for i in range(6):
            sample = make_sample("text", i, 9 - i, rng, codec, f"s{i:03d}")
            if i == 0:
                buf = io.BytesIO()
                np.save(buf, np.full(18, 7, dtype=np.int32))
                sample["reply.codec.npy"] = buf.getvalue()
            w.write(sample)
    shutil.copy(tmp_path / "train-000000.tar", tmp_path / "val-000000.tar")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, batch_size=6))
    batch = next(iter(make_pipeline(cfg, "val", 256)))
    first = batch.keys.index(next(k for k in batch.keys if k.endswith("s000")))
    row = (batch.speech_rows == first).nonzero()[0, 0]
    assert batch.codec_tokens[row, : int(batch.codec_mask[row].sum())].tolist() == [7] * 18
    assert int(batch.codec_tokens.max()) < VOCAB
    losses = OmniModel(cfg)(batch)
    assert torch.isfinite(losses["loss"])
    # training, export: the bundle carries the codec and works without the original folder
    run = tmp_path / "run"
    assert main(["train", *smoke_overrides(tmp_path, run, *overrides, "trainer.max_steps=2",
                                           "trainer.val_check_interval=2", "checkpoint.every_n_steps=2")]) == 0
    bundle = export_bundle(run / "checkpoints" / "last.ckpt", tmp_path / "bundle")
    moved = tmp_path / "moved_codec"
    shutil.move(str(codec_dir), moved)
    try:
        model, bcfg = load_bundle(bundle)
        assert model.codec.vocab_size == VOCAB and (bundle / "codec" / "encode.pt2").exists()
        assert model.codec.encode(wave).shape == (25,)
    finally:
        shutil.move(str(moved), codec_dir)


def test_missing_codec_path_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="codec.path"):
        compose_config(smoke_overrides(tmp_path, tmp_path, "codec=exported", f"codec.path={tmp_path}/nope"))
