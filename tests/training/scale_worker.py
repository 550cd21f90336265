"""Run by torchrun in tests: one training run through omnitrain's own ``train`` (the
path ``omnitrain train`` takes), then, with every rank still in the job:

1. the trained model's outputs on a fixed batch, gathered from the shards (ZeRO-3),
   saved by rank 0 with that batch, for comparison with the exported bundle;
2. one forward/backward where rank 0's batch is text only and rank 1's has audio,
   image and video: ZeRO-3 gathers each encoder's weights collectively, so a rank that
   skipped an encoder would leave the others waiting (DeepSpeed #7170). The test's
   subprocess timeout turns such a hang into a failure.

Usage: python -m torch.distributed.run ... scale_worker.py OUT_DIR OVERRIDE...
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from omnitrain.data.pipeline import make_pipeline
from omnitrain.run_config import compose_config
from omnitrain.training.run import teardown_distributed, train
from tests.helpers import modality_batches, model_outputs


def main(out: Path, overrides: list[str]) -> None:
    cfg = compose_config(overrides)
    trainer, module = train(cfg)
    model = module.model.eval()
    zero3 = cfg.strategy.name == "deepspeed" and cfg.strategy.stage == 3
    gathered = nullcontext()
    if zero3:
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(list(model.parameters()))
    pad = module.model.tokenizer.special_id("pad")
    batch = next(iter(make_pipeline(cfg, "val", pad)))
    with gathered:
        outputs = model_outputs(model, batch)
    if trainer.is_global_zero:
        torch.save({"batch": batch, "outputs": outputs}, out / "trained_outputs.pt")

    text_only, media = modality_batches(cfg, pad)
    mine = text_only if trainer.global_rank == 0 else media
    model.train()
    loss = model(mine)["loss"]
    if zero3:
        trainer.strategy.deepspeed_engine.backward(loss)
    else:
        loss.backward()
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        (out / "mixed_modalities_step.txt").write_text(f"{float(loss):.6f}\n")


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]), sys.argv[2:])
    finally:
        teardown_distributed()
