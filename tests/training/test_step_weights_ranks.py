"""Losses weighted by the whole optimizer step across ranks: 2 CPU processes (gloo),
accumulate 4, micro-batches of unequal sizes on each rank. Under DDP (rank averaging,
Lightning's 1/4), DeepSpeed ZeRO-2 (also the engine's own 1/4) and FSDP the optimizer gets
the gradient of one batch holding all 8 micro-batches' samples, and the logged losses
are that batch's. One torchrun job (``step_weights_worker.py``) runs all three."""

from __future__ import annotations

import json

import pytest

from tests.training.test_scale_cpu import launch

pytestmark = pytest.mark.slow
TOL = 1e-6


def test_step_gradient_over_ranks_is_the_whole_steps(demo_dir, tmp_path):
    launch("-m", "tests.training.step_weights_worker", str(demo_dir), str(tmp_path), timeout=480)
    results = json.loads((tmp_path / "gaps.json").read_text())
    print({s: r["gap"] for s, r in results.items()})
    assert {s: r["strategy"] for s, r in results.items()} == {
        "ddp": "DDPStrategy", "deepspeed_zero2": "OmniDeepSpeedStrategy", "fsdp": "OmniFSDPStrategy"}
    for strategy, r in results.items():
        assert r["grads"] > 0 and r["gap"] <= TOL, (strategy, r["gap"])
        for name in ("train/text", "train/codec", "train/loss"):
            assert abs(r["logged"][name] / r["want"][name] - 1) <= TOL, (strategy, name, r["logged"], r["want"])
