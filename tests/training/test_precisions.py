"""Every built-in plugin trains in every precision and under every sharded strategy, as
one CPU process: the baseline set, the Qwen2.5-Omni set (which differ in how they make
tensors in forward: sinusoids, reference embeddings, masks) and Qwen3-Omni's Thinker side, under fp32, autocast bf16
(``bf16-mixed``), bf16 weights (``bf16-true``), and DeepSpeed ZeRO-3 and FSDP with bf16.
ZeRO-1 and ZeRO-2 cast the model as ZeRO-3 does (one DeepSpeed ``bf16`` section); they run
in test_lora.py (both stages, fp32) and test_nonfinite_guard.py (ZeRO-2, bf16-mixed), which
with this file cover every line the ZeRO-1/2 cells here did (coverage, issue 26).

Two steps, then validation (the Talker's free-running decode, the DiT's ODE sampler and
the vocoder run there), then a checkpoint; the losses must be finite, and inside each
training step the Thinker computes in the dtypes the precision promises.
"""

from __future__ import annotations

import csv
import math

import lightning as L
import pytest
import torch

from omnitrain.cli import main
from omnitrain.training import trainer_factory
from tests.helpers import smoke_overrides

pytestmark = pytest.mark.slow

PLUGINS = {
    "baseline": ("position=rope1d",),
    "qwen": ("audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "talker=dual_track", "dit=flow_dit"),
    # Qwen3-Omni: the MoE Thinker (grouped experts), AuT, the deepstack ViT, its TMRoPE, the MoE Talker with
    # its code predictor over 3 code groups, and Code2Wav trained by its mel loss (qwen3_omni_smoke's set)
    "qwen3": ("thinker=qwen3_moe", "audio_encoder=qwen3_aut", "vision_encoder=qwen3_vit", "position=qwen3_tmrope",
              "talker=qwen3_moe", "codec=pitch_groups", "codec.groups=3", "dit=none", "vocoder=code2wav",
              "vocoder.upsample_rates=[8,5,4]", "loss.flow=0", "loss.weights.code2wav_mel=1.0"),
}
CELLS = [(p, "auto", prec) for p in PLUGINS for prec in ("32-true", "bf16-mixed", "bf16-true")]
CELLS += [(p, s, "bf16-mixed") for p in PLUGINS for s in ("deepspeed_zero3", "fsdp")]

F32, BF16 = torch.float32, torch.bfloat16
# (stored Thinker parameters, a Thinker matmul's weight in forward, its output, autocast on,
# the DeepSpeed engine's model dtype): what each precision means
EXPECTED = {
    ("auto", "32-true"): (F32, F32, F32, False, None),
    ("auto", "bf16-mixed"): (F32, F32, BF16, True, None),  # fp32 weights, bf16 math by autocast
    ("auto", "bf16-true"): (BF16, BF16, BF16, False, None),
    ("deepspeed_zero3", "bf16-mixed"): (BF16, BF16, BF16, False, BF16),  # the engine casts the model
    ("fsdp", "bf16-mixed"): (F32, BF16, BF16, False, None),  # fp32 shards, bf16 gathered for compute
}


class Dtypes(L.Callback):
    """What the Thinker holds and computes in at each training step."""

    def __init__(self):
        self.seen = set()

    def on_train_start(self, trainer, pl_module):
        engine = getattr(trainer.strategy, "deepspeed_engine", None)
        self.engine = engine.get_data_types()[0] if engine is not None else None
        self.stored = None
        thinker = pl_module.model.thinker
        matmul = next(m for m in thinker.layers[0].modules() if isinstance(m, torch.nn.Linear))

        def record(module, inputs, output):
            if module.training:
                self.seen.add((self.stored, module.weight.dtype, output.dtype,
                               torch.is_autocast_enabled("cpu"), self.engine))

        matmul.register_forward_hook(record)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        (self.stored,) = {p.dtype for p in pl_module.model.thinker.parameters()}


@pytest.fixture
def dtypes(monkeypatch):
    probe, built = Dtypes(), trainer_factory.build_callbacks
    monkeypatch.setattr(trainer_factory, "build_callbacks", lambda *a, **k: [*built(*a, **k), probe])
    return probe


@pytest.mark.parametrize("plugins,strategy,precision", CELLS, ids=lambda x: str(x))
def test_two_steps_validate_and_save(plugins, strategy, precision, request, tmp_path, capsys, dtypes):
    run = tmp_path / "run"
    data = request.getfixturevalue("pitch_groups_demo_dir" if plugins == "qwen3" else "demo_dir")
    overrides = smoke_overrides(
        data, run, *PLUGINS[plugins], f"strategy={strategy}", f"trainer.precision={precision}",
        "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
        "checkpoint.every_n_steps=2", "trainer.log_every_n_steps=1",
    )
    assert main(["train", *overrides]) == 0, capsys.readouterr().err[-3000:]
    assert dtypes.seen == {EXPECTED[strategy, precision]}
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
    assert any(r.get("val/loss") and math.isfinite(float(r["val/loss"])) for r in rows)
    assert (run / "checkpoints" / "last.ckpt").exists()
