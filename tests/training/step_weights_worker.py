"""Run by torchrun (2 ranks) in ``test_step_weights_ranks.py``: one optimizer step of 4
accumulated micro-batches per rank, of unequal sizes on each rank, under DDP, DeepSpeed
ZeRO-2 and FSDP (each Trainer after the first joins the process group it made); rank 0
writes each strategy's gradient gap to the one-batch reference, and its logged losses.

Usage: python -m torch.distributed.run ... step_weights_worker.py DEMO_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from omnitrain.data.collate import collate
from omnitrain.registry import build
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides
from tests.training.step_weights_helpers import (
    mixed_examples,
    reference,
    relative_gap,
    slices,
    train_steps,
)

SIZES = [[1, 4, 2, 3], [3, 1, 5, 1]]  # examples in each micro-batch, rank by rank


def main(demo: Path, out: Path) -> None:
    rank, results = int(os.environ["RANK"]), {}
    for strategy in ("ddp", "deepspeed_zero2", "fsdp"):
        cfg = compose_config(smoke_overrides(demo, out / strategy, f"strategy={strategy}", "trainer.devices=2",
                                             "loss.flow=0"))
        pad = build("tokenizer", cfg.tokenizer).special_id("pad")
        examples = mixed_examples(cfg, demo, sum(map(sum, SIZES)))
        groups = slices(examples, SIZES[0] + SIZES[1])
        capture = train_steps(cfg, [collate(g, pad) for g in groups[4 * rank:4 * rank + 4]], accumulate=4, steps=1)
        want, losses = reference(cfg, capture.states[0], collate(examples, pad))
        results[strategy] = {"gap": relative_gap(capture.grads[0], want), "logged": capture.logged[0],
                             "want": losses, "grads": len(capture.grads[0]),
                             "strategy": capture.strategy}
        torch.distributed.barrier()
    if rank == 0:
        (out / "gaps.json").write_text(json.dumps(results, indent=1))


def teardown_distributed() -> None:
    """As ``omnitrain.training.run.teardown_distributed``: no live gloo group at exit."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
    finally:
        teardown_distributed()
