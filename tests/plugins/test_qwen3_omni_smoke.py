"""``recipe=qwen3_omni_smoke``, the whole Qwen3-Omni design at a tiny size on the demo's data
with 3 code groups a frame (``codec=pitch_groups``): it trains under auto and ZeRO-2 with
every loss logged by name, and the exported bundle speaks through the Talker, its code
predictor and Code2Wav, streamed audio equal to whole. Code2Wav stays as it was unless its mel
loss is given a weight; then it trains."""

from __future__ import annotations

import csv
import math

import pytest
import soundfile as sf
import torch

from omnitrain.checkpoints import open_checkpoint
from omnitrain.cli import main
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config

pytestmark = pytest.mark.slow
LOSSES = ("train/text", "train/codec", "train/residual_codes", "train/router", "train/talker_router")


def train(run, data, *extra) -> list[str]:
    overrides = ["recipe=qwen3_omni_smoke", f"run_dir={run}", "logger=csv", f"data.train_shards={data}/train-*.tar",
                 f"data.val_shards={data}/val-*.tar", "trainer.max_steps=3", "trainer.log_every_n_steps=1",
                 "trainer.limit_val_batches=0", "checkpoint.every_n_steps=3", *extra]
    assert main(["train", *overrides]) == 0
    return overrides


def vocoder_moved(run, overrides) -> bool:
    """Whether the run's Code2Wav weights left the ones it started from (same seed, same build)."""
    cfg = compose_config(overrides)
    torch.manual_seed(cfg.seed)
    start = {k: v for k, v in OmniModel(cfg).state_dict().items() if k.startswith("vocoder.")}
    reader = open_checkpoint(run / "checkpoints" / "last.ckpt")
    trained = {n: torch.zeros(s.numel) for n, s in reader.tensors().items() if n in start}

    def sink(name, offset, piece):
        if name in trained:
            trained[name][offset:offset + piece.numel()] = piece.float()

    reader.stream(sink)
    assert len(trained) == len(start) > 10
    return any(not torch.equal(trained[n], start[n].float().flatten()) for n in start)


@pytest.mark.parametrize("strategy", ["auto", "deepspeed_zero2"])
def test_trains_with_every_loss_named_and_speaks(strategy, pitch_groups_demo_dir, tmp_path, capsys):
    run, data = tmp_path / "run", pitch_groups_demo_dir
    overrides = train(run, data, f"strategy={strategy}")
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == 3
    for name in LOSSES:
        values = [float(r[name]) for r in rows]
        assert all(math.isfinite(v) and v > 0 for v in values), (name, values)
    # the code predictor starts near ln(codes a group), as an untrained head should
    assert abs(float(rows[0]["train/residual_codes"]) - math.log(97)) < 0.3 * math.log(97)
    if strategy != "auto":
        return
    assert not vocoder_moved(run, overrides)  # no loss reaches Code2Wav by default: frozen
    bundle = tmp_path / "bundle"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(bundle)]) == 0
    whole, streamed = tmp_path / "whole.wav", tmp_path / "streamed.wav"
    assert main(["generate", str(bundle), "--text", "what is 3 plus 4?", "--speech", str(whole)]) == 0
    assert main(["generate", str(bundle), "--text", "what is 3 plus 4?", "--speech", str(streamed),
                 "--stream"]) == 0
    a, rate = sf.read(str(whole))
    b, _ = sf.read(str(streamed))
    assert rate == 16000 and len(a) > 0 and len(a) % 640 == 0  # whole codes of 640 samples
    assert a.shape == b.shape and abs(a - b).max() == 0


def test_code2wav_trains_when_its_mel_loss_weighs(pitch_groups_demo_dir, tmp_path):
    run = tmp_path / "run"
    overrides = train(run, pitch_groups_demo_dir, "loss.weights.code2wav_mel=1.0")
    with open(run / "csv" / "metrics.csv") as f:
        values = [float(r["train/code2wav_mel"]) for r in csv.DictReader(f) if r.get("train/code2wav_mel")]
    assert len(values) == 3 and all(0 < v < 10 for v in values)
    assert vocoder_moved(run, overrides)
