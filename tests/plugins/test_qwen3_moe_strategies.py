"""The MoE Thinker under every strategy (CPU, 2 processes, gloo, launched with torchrun):
ZeRO-2, ZeRO-3 and FSDP train Qwen3-Omni's MoE Thinker 3 steps with the losses of DDP (the
router's load-balancing loss included), within test_scale_cpu's tolerances per strategy.

Every run has an expert that no token of rank 1 reaches (``idle_expert_thinker.py``: the
``qwen3_moe`` plugin with rank 1's router never choosing expert 0), so each strategy also shows
that an idle expert on one rank neither hangs ZeRO-3's gathers (each launch has a timeout) nor
trips DDP's unused-parameter check."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers import smoke_overrides
from tests.training.test_scale_cpu import LOSS_TOL, launch

pytestmark = pytest.mark.slow
STRATEGIES = {"ddp": "ddp", "zero2": "deepspeed_zero2", "zero3": "deepspeed_zero3", "fsdp": "fsdp"}
IDLE_PLUGIN = Path(__file__).with_name("idle_expert_thinker.py")


def losses(run) -> dict[int, tuple[float, float]]:
    with open(run / "csv" / "metrics.csv") as f:
        return {int(r["step"]): (float(r["train/loss"]), float(r["train/router"]))
                for r in csv.DictReader(f) if r.get("train/loss")}


@pytest.fixture(scope="module")
def runs(demo_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("moe")
    out = {}
    for name, strategy in STRATEGIES.items():
        extra = ["strategy.param_persistence_threshold=0"] if name == "zero3" else []
        launch("-m", "omnitrain", "train", *smoke_overrides(
            demo_dir, base / name, f"plugins=[{IDLE_PLUGIN}]", "thinker=qwen3_moe_idle_expert", "trainer.devices=2",
            f"strategy={strategy}",
            "trainer.max_steps=3", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0",
            "checkpoint.every_n_steps=1000", "checkpoint.save_last=false", "optim.schedule=constant", *extra))
        out[name] = losses(base / name)
    return out


@pytest.mark.parametrize("name", ["zero2", "zero3", "fsdp"])
def test_moe_losses_match_ddp(runs, name):
    want, got = runs["ddp"], runs[name]
    assert sorted(want) == sorted(got) == [0, 1, 2]
    for step, (loss, router) in want.items():
        assert got[step][0] == pytest.approx(loss, rel=LOSS_TOL[name]), (step, got[step], loss)
        assert got[step][1] == pytest.approx(router, rel=LOSS_TOL[name]), (step, got[step], router)
    assert want[0][1] > 0  # the router's loss is there, and it is weighted into the total
