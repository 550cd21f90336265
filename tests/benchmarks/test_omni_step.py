"""benchmarks/omni_step.py at the tiny size: the per-slot breakdown is measured (every
region timed, the shares add up), and the framework/hand ratio comes from two real
training runs over the same batches that both changed the weights."""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import omni_step  # noqa: E402
import omni_timing  # noqa: E402

SLOW_S = 0.15  # planted into every hand-loop step (the scheduler's step): the clock must see it


def record_runs(monkeypatch) -> dict[str, list]:
    """The raw per-step records of each run the script makes, as its own functions return
    them; the hand loop made slower by ``SLOW_S`` a step."""
    runs = {"lightning": [], "hand": [], "breakdown": []}
    lightning_run, hand_run, hand_init = omni_step.lightning_run, omni_step.HandLoop.run, omni_step.HandLoop.__init__

    def lightning(args, device, run_dir, probe=None):
        out = lightning_run(args, device, run_dir, probe)
        if probe is None:  # not the --explain run
            runs["lightning"].append(out)
        return out

    def hand(self, steps, timeline=None):
        out = hand_run(self, steps, timeline)
        runs["hand" if timeline is None else "breakdown"].append(out)
        return out

    def slow_init(self, cfg, device):
        hand_init(self, cfg, device)
        step = self.scheduler.step
        self.scheduler.step = lambda *a, **k: (time.sleep(SLOW_S), step(*a, **k))[1]

    monkeypatch.setattr(omni_step, "lightning_run", lightning)
    monkeypatch.setattr(omni_step.HandLoop, "run", hand)
    monkeypatch.setattr(omni_step.HandLoop, "__init__", slow_init)
    return runs


def test_omni_step_reports_the_breakdown_and_the_framework_ratio(demo_dir, tmp_path, monkeypatch):
    """The reported step times and ratios are the medians of the runs' own per-step records
    after the warm-up, and a hand loop made slower is reported slower."""
    runs = record_runs(monkeypatch)
    out = tmp_path / "omni_step.json"
    result = omni_step.main(["--data", str(demo_dir), "--steps", "3", "--warmup", "1", "--rounds", "1",
                             "--threads", "1", "--explain", "always", "--json", str(out)])
    assert json.loads(out.read_text())["framework"]["ratio"] == result["framework"]["ratio"]

    b = result["breakdown"]
    assert set(b["regions"]) == set(omni_timing.REGIONS)
    for name, row in b["regions"].items():
        assert row["ms"] > 0, f"{name} was not timed"
    (part_a,) = runs["breakdown"]  # its per-step regions, after the one warm-up step
    wall = sum(sum(step.values()) for step in part_a.regions[1:])
    for name, row in b["regions"].items():
        assert row["ms"] == 1e3 * statistics.median(step[name] for step in part_a.regions[1:])
        assert row["percent"] == 100 * sum(step[name] for step in part_a.regions[1:]) / wall
    # measured 0 (3 runs): shares of one total; 1e-12 leaves a sum of 9 floats its rounding
    assert math.isclose(sum(r["percent"] for r in b["regions"].values()), 100.0, rel_tol=0, abs_tol=1e-12)
    # every slot module and every loss function OmniModel calls was instrumented
    assert {f"{s}.forward" for s in omni_timing.SLOT_MODULES} <= set(b["timed"])
    assert sum(name.startswith("omni_model.") for name in b["timed"]) == len(omni_timing.LOSS_FUNCTIONS)
    assert "talker.loss" in b["timed"]
    assert b["tokens_per_s"] > 0 and b["weights_changed"] and all(map(math.isfinite, b["losses"]))

    f = result["framework"]
    (light,), (hand,) = runs["lightning"], runs["hand"]  # one round: one run of each
    assert len(light.times) == len(hand.times) == len(light.cpu) == len(hand.cpu) == 4  # warm-up + 3
    # each step of the hand loop slept SLOW_S inside the clocked span: its wall time has it
    assert min(hand.times) >= SLOW_S
    steady = {k: statistics.median(run.times[1:]) for k, run in (("lightning", light), ("hand", hand))}
    cpu = {k: statistics.median(run.cpu[1:]) for k, run in (("lightning", light), ("hand", hand))}
    (r,) = f["rounds"]
    assert r["lightning_ms"] == 1e3 * steady["lightning"] and r["hand_ms"] == 1e3 * steady["hand"]
    assert r["hand_ms"] >= 1e3 * SLOW_S
    assert r["lightning_cpu_ms"] == 1e3 * cpu["lightning"] and r["hand_cpu_ms"] == 1e3 * cpu["hand"]
    assert f["ratio"] == steady["lightning"] / steady["hand"] == f["pooled_ratio"]  # one round: the same
    assert f["cpu_ratio"] == cpu["lightning"] / cpu["hand"]
    assert (f["lightning_step_ms"], f["hand_step_ms"]) == (r["lightning_ms"], r["hand_ms"])
    assert f["measured_steps_each"] == 3
    c = f["checks"]
    assert c["same_batches"] and c["losses_finite"]
    assert c["lightning_weights_changed"] and c["hand_weights_changed"]
    # same init, batches, noise and optimizer: the same losses (measured 0: bit-equal, 3 runs)
    assert len(light.losses) == 4 and light.losses == hand.losses and c["max_loss_diff"] == 0

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
