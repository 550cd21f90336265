"""``strategy.timeout_s`` reaches every strategy's process group (default 600 s, torch's
NCCL default), and on NCCL the strategy turns on PyTorch's watchdog before the process
group starts, leaving alone what the user set. The job-level behaviour (a hung rank ends
the job) runs for real in test_rank_hang.py; NCCL itself needs GPUs."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from omnitrain.parallel import strategy_for
from omnitrain.run_config import compose_config

WATCHDOG = ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING", "TORCH_NCCL_ENABLE_MONITORING",
            "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC")


@pytest.fixture
def clean_env(monkeypatch):
    for name in WATCHDOG:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed_zero2", "fsdp"])
def test_every_strategy_waits_600_s_by_default_or_strategy_timeout_s(strategy):
    assert strategy_for(compose_config([f"strategy={strategy}"])).lightning()._timeout == timedelta(seconds=600)
    cfg = compose_config([f"strategy={strategy}", "strategy.timeout_s=45"])
    assert strategy_for(cfg).lightning()._timeout == timedelta(seconds=45)


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed_zero2", "fsdp"])
def test_nccl_turns_on_the_watchdog_before_the_process_group(clean_env, strategy):
    cfg = compose_config([f"strategy={strategy}", "trainer=gpu", "strategy.process_group_backend=nccl",
                          "strategy.timeout_s=300"])
    strategy_for(cfg).lightning()
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert os.environ["TORCH_NCCL_ENABLE_MONITORING"] == "1"
    assert os.environ["TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC"] == "300"


def test_what_the_user_set_is_kept_and_small_timeouts_keep_a_minute_of_heartbeat(clean_env):
    clean_env.setenv("NCCL_ASYNC_ERROR_HANDLING", "3")  # the older spelling counts as set
    clean_env.setenv("TORCH_NCCL_ENABLE_MONITORING", "0")
    cfg = compose_config(["strategy=ddp", "trainer=gpu", "strategy.process_group_backend=nccl",
                          "strategy.timeout_s=20"])
    assert strategy_for(cfg).nccl_watchdog() == {"TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": "60"}
    assert "TORCH_NCCL_ASYNC_ERROR_HANDLING" not in os.environ
    assert os.environ["TORCH_NCCL_ENABLE_MONITORING"] == "0"


def test_gloo_on_the_cpu_sets_nothing(clean_env):
    cfg = compose_config(["strategy=ddp", "trainer=cpu"])
    assert strategy_for(cfg).nccl_watchdog() == {}
    strategy_for(cfg).lightning()
    assert not [name for name in WATCHDOG if name in os.environ]
