"""``recipe=qwen3_omni_smoke``, the whole Qwen3-Omni design at a tiny size on the demo's data
with 3 code groups a frame (``codec=pitch_groups``): it trains under auto and ZeRO-2 with
every loss logged by name, and the exported bundle speaks through the Talker, its code
predictor and Code2Wav, streamed audio equal to whole."""

from __future__ import annotations

import csv
import math

import pytest
import soundfile as sf

from omnitrain.cli import main

pytestmark = pytest.mark.slow
LOSSES = ("train/text", "train/codec", "train/residual_codes", "train/router", "train/talker_router")


@pytest.mark.parametrize("strategy", ["auto", "deepspeed_zero2"])
def test_trains_with_every_loss_named_and_speaks(strategy, pitch_groups_demo_dir, tmp_path, capsys):
    run, data = tmp_path / "run", pitch_groups_demo_dir
    assert main(["train", "recipe=qwen3_omni_smoke", f"strategy={strategy}", f"run_dir={run}", "logger=csv",
                 f"data.train_shards={data}/train-*.tar", f"data.val_shards={data}/val-*.tar",
                 "trainer.max_steps=3", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0",
                 "checkpoint.every_n_steps=3"]) == 0, capsys.readouterr().err[-3000:]
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
