"""Adding a strategy is one class in one file (here, this test's) plus, if it has
presets, one config file: registered, its options become the ``strategy`` group's
schema, its checks run at compose time, its memory model joins ``omnitrain plan``,
and training runs it, with nothing else in omnitrain touched."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

import pytest

from omnitrain.cli import main
from omnitrain.config.validate import ConfigError
from omnitrain.parallel import Strategy, register_strategy, strategy_for
from omnitrain.run_config import compose_config
from omnitrain.training.performance.plan import chosen, make_plan
from tests.helpers import smoke_overrides


@dataclass
class HalfStatesOptions:
    bucket_mb: int = 25  # an option with a range the strategy checks itself


@register_strategy
class HalfStates(Strategy):
    """A test strategy: plain DDP underneath, with its own options, check, plan row."""

    name = "test_half_states"
    Options = HalfStatesOptions
    plan_row = "half_states"

    def check(self) -> list[str]:
        problems = super().check()
        if self.options.bucket_mb <= 0:
            problems.append(f"strategy.bucket_mb must be > 0, got {self.options.bucket_mb}")
        return problems

    def lightning(self) -> Any:
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend=self.process_group_backend(), timeout=self.timeout())

    @staticmethod
    def state_rows(stats, gpus, per_node, options) -> dict[str, tuple[float, float]]:
        return {"half_states": ((2.0 * stats.params + 14.0 * stats.trainable) / 2, 0.0)}


def test_it_composes_with_typed_options_and_its_own_checks():
    cfg = compose_config(["strategy=test_half_states", "strategy.bucket_mb=50"])
    assert isinstance(strategy_for(cfg), HalfStates) and strategy_for(cfg).options.bucket_mb == 50
    with pytest.raises(ConfigError, match="bucket_mb must be > 0"):
        compose_config(["strategy=test_half_states", "strategy.bucket_mb=0"])
    with pytest.raises(ConfigError, match="bucket"):
        compose_config(["strategy=test_half_states", "+strategy.buckets=1"])


def test_its_memory_model_is_in_the_plan(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "strategy=test_half_states"))
    plan = make_plan(cfg, 2, 2)
    assert chosen(cfg) == "half_states" and plan.states["half_states"] == pytest.approx(plan.states["ddp"] / 2)


def test_it_trains(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = smoke_overrides(demo_dir, run, "strategy=test_half_states", "trainer.max_steps=2",
                           "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1")
    assert main(["train", *args]) == 0, capsys.readouterr().err[-2000:]
    with open(run / "csv" / "metrics.csv") as f:
        assert len([r for r in csv.DictReader(f) if r.get("train/loss")]) == 2
