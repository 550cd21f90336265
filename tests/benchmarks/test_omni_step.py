"""benchmarks/omni_step.py at the tiny size: the per-slot breakdown is measured (every
region timed, the shares add up), and the framework/hand ratio comes from two real
training runs over the same batches that both changed the weights."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import omni_step  # noqa: E402
import omni_timing  # noqa: E402


def test_omni_step_reports_the_breakdown_and_the_framework_ratio(demo_dir, tmp_path):
    out = tmp_path / "omni_step.json"
    result = omni_step.main(["--data", str(demo_dir), "--steps", "3", "--warmup", "1", "--rounds", "1",
                             "--threads", "1", "--explain", "always", "--json", str(out)])
    assert json.loads(out.read_text())["framework"]["ratio"] == result["framework"]["ratio"]

    b = result["breakdown"]
    assert set(b["regions"]) == set(omni_timing.REGIONS)
    for name, row in b["regions"].items():
        assert row["ms"] > 0, f"{name} was not timed"
    assert math.isclose(sum(r["percent"] for r in b["regions"].values()), 100.0, abs_tol=0.5)
    # every slot module and every loss function OmniModel calls was instrumented
    assert {f"{s}.forward" for s in omni_timing.SLOT_MODULES} <= set(b["timed"])
    assert sum(name.startswith("omni_model.") for name in b["timed"]) == len(omni_timing.LOSS_FUNCTIONS)
    assert b["tokens_per_s"] > 0 and b["weights_changed"] and all(map(math.isfinite, b["losses"]))

    f = result["framework"]
    assert f["lightning_step_ms"] > 0 and f["hand_step_ms"] > 0
    assert math.isclose(f["pooled_ratio"], f["lightning_step_ms"] / f["hand_step_ms"])
    (r,) = f["rounds"]  # one round: its ratio is the ratio, from its two medians
    assert r["lightning_ms"] > 0 and r["hand_ms"] > 0
    assert math.isclose(f["ratio"], r["lightning_ms"] / r["hand_ms"]) and math.isclose(f["ratio"], f["pooled_ratio"])
    assert r["lightning_cpu_ms"] > 0 and r["hand_cpu_ms"] > 0
    assert math.isclose(f["cpu_ratio"], r["lightning_cpu_ms"] / r["hand_cpu_ms"])
    assert f["measured_steps_each"] == 3
    c = f["checks"]
    assert c["same_batches"] and c["losses_finite"]
    assert c["lightning_weights_changed"] and c["hand_weights_changed"]
    assert c["max_loss_diff"] < 1e-4  # same init, batches, noise and optimizer: the same losses

    e = result["explain"]
    assert e["mean_ms_per_step"]["OmniModel.forward"] > 0
    assert any(k.startswith("callback Throughput") for k in e["mean_ms_per_step"])
    assert e["framework_only_ms"] > 0


def test_the_ablation_runs_lightning_without_the_named_callbacks(demo_dir):
    result = omni_step.main(["--data", str(demo_dir), "--parts", "B", "--steps", "2", "--warmup", "1",
                             "--rounds", "1", "--threads", "1", "--explain", "always",
                             "--without", "Throughput,GradNorms"])
    hooks = result["explain"]["mean_ms_per_step"]
    assert not any("Throughput" in k or "GradNorms" in k for k in hooks)
    assert any(k.startswith("callback NonFiniteGuard") for k in hooks)  # the others still run
    assert "breakdown" not in result and result["framework"]["checks"]["lightning_weights_changed"]
