"""Every built-in plugin trains in every precision and under every sharded strategy, as
one CPU process: the baseline set and the Qwen2.5-Omni set (which differ in how they make
tensors in forward: sinusoids, reference embeddings, masks), under fp32, autocast bf16
(``bf16-mixed``), bf16 weights (``bf16-true``), and DeepSpeed ZeRO-1/2/3 and FSDP with bf16.

Two steps, then validation (the Talker's free-running decode, the DiT's ODE sampler and
the vocoder run there), then a checkpoint; the losses must be finite.
"""

from __future__ import annotations

import csv
import math

import pytest

from omnitrain.cli import main
from tests.helpers import smoke_overrides

pytestmark = pytest.mark.slow

PLUGINS = {
    "baseline": ("position=rope1d",),
    "qwen": ("audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "talker=dual_track", "dit=flow_dit"),
}
CELLS = [(p, "auto", prec) for p in PLUGINS for prec in ("32-true", "bf16-mixed", "bf16-true")]
CELLS += [(p, s, "bf16-mixed") for p in PLUGINS
          for s in ("deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3", "fsdp")]


@pytest.mark.parametrize("plugins,strategy,precision", CELLS, ids=lambda x: str(x))
def test_two_steps_validate_and_save(plugins, strategy, precision, demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = smoke_overrides(
        demo_dir, run, *PLUGINS[plugins], f"strategy={strategy}", f"trainer.precision={precision}",
        "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
        "checkpoint.every_n_steps=2", "trainer.log_every_n_steps=1",
    )
    assert main(["train", *overrides]) == 0, capsys.readouterr().err[-3000:]
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
    assert any(r.get("val/loss") and math.isfinite(float(r["val/loss"])) for r in rows)
    assert (run / "checkpoints" / "last.ckpt").exists()
