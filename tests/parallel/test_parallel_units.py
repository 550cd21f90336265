"""Fast unit tests of omnitrain.parallel: precision kinds, process-group backend and timeout,
the NCCL watchdog, world size and global-batch arithmetic, the generated DeepSpeed JSON, the
strategies' checks, contexts, memory rows and resume checks. No training runs here (that is
test_new_strategy.py and tests/training/): configs are small namespaces, or one composed
RunConfig where a strategy reads the plugins."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from contextlib import nullcontext
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from omnitrain.config.validate import ConfigError
from omnitrain.parallel import (
    STRATEGIES,
    register_strategy,
    registered_strategies,
    strategy_class,
    strategy_for,
    strategy_options,
)
from omnitrain.parallel.auto import AutoOptions, AutoStrategy
from omnitrain.parallel.base import Strategy, check_strategy, precision_kind
from omnitrain.parallel.ddp import DDPOptions, DDPStrategy
from omnitrain.parallel.deepspeed.config import (
    check_deepspeed_config,
    deepspeed_config,
    precision_section,
    write_deepspeed_config,
    zero_section,
)
from omnitrain.parallel.deepspeed.strategy import DeepSpeedOptions, DeepSpeedStrategy
from omnitrain.parallel.fsdp.strategy import FSDPOptions, FSDPStrategy, block_types
from omnitrain.parallel.global_batch import (
    per_rank_batch,
    resolve_batch_size,
    static_batch_problems,
)
from omnitrain.parallel.world import world_size_of
from omnitrain.run_config import compose_config

WATCHDOG = ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING", "TORCH_NCCL_ENABLE_MONITORING",
            "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC")
# memory-model inputs: 1000 parameters, 600 trainable, largest layer 50, 4 GPUs, 2 per node
STATS = SimpleNamespace(params=1000, trainable=600, largest_layer=50)


def fake_cfg(precision="32-true", accelerator="cpu", clip=None, clip_algorithm=None, devices=1, nodes=1,
             accumulate=1, batch_size=3, batching="samples", rows=5, global_batch=None):
    trainer = SimpleNamespace(precision=precision, accelerator=accelerator, gradient_clip_val=clip,
                              gradient_clip_algorithm=clip_algorithm, devices=devices, num_nodes=nodes,
                              accumulate_grad_batches=accumulate)
    data = SimpleNamespace(batch_size=batch_size, batching=batching, rows_per_batch=rows,
                           global_batch_size=global_batch)
    return SimpleNamespace(trainer=trainer, data=data)


@pytest.fixture(scope="module")
def run_cfg():
    """One composed RunConfig (CPU, strategy=auto, the default plugins)."""
    return compose_config([])


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*WATCHDOG, "WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def linear_trainer(grad=None):
    module = nn.Linear(2, 1)
    if grad is not None:
        module.weight.grad = torch.full((1, 2), grad)
    return SimpleNamespace(lightning_module=module)


# ---- base.Strategy ------------------------------------------------------------------------
@pytest.mark.parametrize("precision,kind", [
    ("32", "32"), ("32-true", "32"), ("64-true", "32"), ("bf16-mixed", "bf16-mixed"), ("16-mixed", "bf16-mixed"),
    ("bf16-true", "bf16"), ("bf16", "bf16"), ("16-true", "bf16"),
])
def test_precision_kind_of_each_lightning_precision(precision, kind):
    assert precision_kind(precision) == kind


def test_fp16_is_refused_on_the_cpu_only():
    msg = ("trainer.precision=16-mixed (fp16) cannot run on the CPU; use trainer.precision=32-true "
           "or bf16-mixed on CPU, or trainer=gpu for fp16")
    assert DDPStrategy(DDPOptions(), fake_cfg("16-mixed")).check() == [msg]
    assert DDPStrategy(DDPOptions(), fake_cfg("16-mixed", accelerator="gpu")).check() == []
    assert DDPStrategy(DDPOptions(), fake_cfg("bf16-mixed")).check() == []


def test_backend_is_gloo_on_the_cpu_unless_set_and_the_timeout_600_s():
    cpu = DDPStrategy(DDPOptions(), fake_cfg())
    assert cpu.on_cpu is True and cpu.process_group_backend() == "gloo"
    assert cpu.timeout_s == 600 and cpu.timeout() == timedelta(seconds=600)
    gpu = DDPStrategy(DDPOptions(timeout_s=45), fake_cfg(accelerator="gpu"))
    assert gpu.on_cpu is False and gpu.process_group_backend() is None and gpu.timeout() == timedelta(seconds=45)
    assert DDPStrategy(DDPOptions(process_group_backend="nccl"), fake_cfg()).process_group_backend() == "nccl"
    assert AutoStrategy(AutoOptions(), fake_cfg()).timeout_s == 600  # no timeout option: the default


@pytest.mark.parametrize("backend,accelerator,cuda,nccl", [
    ("nccl", "gpu", False, True), ("gloo", "gpu", True, False), (None, "cpu", True, False),
    (None, "gpu", True, True), (None, "gpu", False, False),
])
def test_uses_nccl_when_set_or_lightnings_choice_on_cuda(monkeypatch, backend, accelerator, cuda, nccl):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    strategy = DDPStrategy(DDPOptions(process_group_backend=backend), fake_cfg(accelerator=accelerator))
    assert strategy.uses_nccl is nccl


def test_nccl_watchdog_sets_only_what_the_user_left_unset(clean_env):
    """The older spelling counts as set; the heartbeat is max(60, timeout_s)."""
    strategy = DDPStrategy(DDPOptions(process_group_backend="nccl", timeout_s=90), fake_cfg(accelerator="gpu"))
    assert strategy.nccl_watchdog() == {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "TORCH_NCCL_ENABLE_MONITORING": "1",
                                        "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": "90"}
    assert [os.environ[n] for n in WATCHDOG if n in os.environ] == ["1", "1", "90"]
    for name in WATCHDOG:
        clean_env.delenv(name, raising=False)
    clean_env.setenv("NCCL_ASYNC_ERROR_HANDLING", "3")
    short = DDPStrategy(DDPOptions(process_group_backend="nccl", timeout_s=20), fake_cfg(accelerator="gpu"))
    assert short.nccl_watchdog() == {"TORCH_NCCL_ENABLE_MONITORING": "1", "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": "60"}
    assert "TORCH_NCCL_ASYNC_ERROR_HANDLING" not in os.environ


def test_auto_is_lightnings_auto_and_starts_the_watchdog_on_cuda(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    assert AutoStrategy(AutoOptions(), fake_cfg(accelerator="gpu")).lightning() == "auto"
    assert os.environ["TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC"] == "600"


def test_base_strategy_hooks_are_no_ops():
    """A full model copy per process: plain contexts, Lightning's clipping and AdamW."""
    from omnitrain.checkpoints.direct_io import DirectCheckpointIO

    strategy, model = DDPStrategy(DDPOptions(), fake_cfg("bf16-mixed")), nn.Linear(2, 1)
    with strategy.construction(), strategy.loading(model), strategy.full_parameters(None):
        pass
    assert strategy.shards_parameters is False and isinstance(strategy.checkpoint_io(), DirectCheckpointIO)
    assert strategy.trainer_args({"gradient_clip_val": 1.0}) == {"gradient_clip_val": 1.0}
    assert strategy.optimizer([], 1e-3, (0.9, 0.95), 1e-8) is None
    assert strategy.step_was_skipped(None, True) is True and strategy.step_was_skipped(None, False) is False
    assert strategy.compute_kind() == "bf16-mixed" and strategy.plan_row == "ddp"


def test_local_grads_finite_and_drop_step():
    strategy = DDPStrategy(DDPOptions(), fake_cfg())
    assert strategy.local_grads_finite(linear_trainer()) is True  # no gradient yet
    assert bool(strategy.local_grads_finite(linear_trainer(0.5))) is True
    trainer = linear_trainer(float("inf"))
    assert bool(strategy.local_grads_finite(trainer)) is False
    strategy.drop_step(trainer)
    assert all(p.grad is None for p in trainer.lightning_module.parameters())


def test_ddp_memory_row_is_16_bytes_per_trainable_and_2_per_frozen_parameter():
    assert Strategy.state_rows(STATS, 4, 2, None) == {"ddp": (2.0 * 1000 + 14.0 * 600, 0.0)}  # 10400


def test_resume_from_another_strategys_checkpoint_names_the_ones_that_can():
    strategy = DDPStrategy(DDPOptions(), fake_cfg())
    assert strategy.resume_problems(SimpleNamespace(kind="file", path="ck")) == []
    assert strategy.resume_problems(SimpleNamespace(kind="fsdp", path="ck")) == [
        "'ck' was written by a fsdp strategy and cannot be resumed with strategy=ddp; resume with ['fsdp'], "
        "or export it (omnitrain export ck BUNDLE) to start a new run from its weights"]


def test_a_second_class_under_a_registered_name_is_refused():
    assert register_strategy(DDPStrategy) is DDPStrategy  # the same class again: a no-op

    class Other(DDPStrategy):
        name = "ddp"

    with pytest.raises(KeyError, match="strategy 'ddp' is registered twice"):
        register_strategy(Other)
    assert STRATEGIES["ddp"] is DDPStrategy


def test_unknown_strategy_names_the_closest():
    assert strategy_class("ddp") is DDPStrategy
    with pytest.raises(KeyError, match=r"unknown strategy 'ddq' \(did you mean 'ddp'\?\); registered: \["):
        strategy_class("ddq")
    with pytest.raises(KeyError, match=r"unknown strategy 'qqqqqqq'; registered: \["):
        strategy_class("qqqqqqq")


def test_strategy_options_are_typed_and_interpolations_resolved():
    root = OmegaConf.create({"wait": 45, "strategy": {"name": "ddp", "timeout_s": "${wait}", "static_graph": True}})
    assert strategy_options(root.strategy) == DDPOptions(static_graph=True, timeout_s=45)
    assert strategy_options({"name": "fsdp"}) == FSDPOptions()
    with pytest.raises(KeyError, match=r"strategy=ddp has no option \['bucket'\]"):
        strategy_options({"name": "ddp", "bucket": 1})


def test_strategy_for_a_run_config(run_cfg):
    assert isinstance(strategy_for(run_cfg), AutoStrategy) and check_strategy(run_cfg) == []
    everything = registered_strategies()
    assert {"auto", "ddp", "deepspeed", "fsdp"} <= set(everything) and everything["fsdp"] is FSDPStrategy


# ---- global_batch ---------------------------------------------------------------------------
def test_per_rank_batch_divides_the_global_batch():
    assert [per_rank_batch(32, 4, 2), per_rank_batch(1, 1, 1), per_rank_batch(12, 3, 1)] == [4, 1, 4]
    assert type(per_rank_batch(32, 4, 2)) is int


@pytest.mark.parametrize("global_batch,world,accumulate,tail", [
    # multiple of 6 below/above 32; process counts n with 32 % (2n) == 0
    (32, 3, 2, "multiple of 6 (e.g. 30 or 36), or run on one of these process counts: [1, 2, 4, 8, 16]"),
    # divisors of 6, 6 itself included
    (6, 4, 1, "multiple of 4 (e.g. 4 or 8), or run on one of these process counts: [1, 2, 3, 6]"),
    (0, 1, 1, "multiple of 1 (e.g. 1 or 1), or run on one of these process counts: []"),
])
def test_a_global_batch_that_does_not_divide_suggests_what_would(global_batch, world, accumulate, tail):
    with pytest.raises(ConfigError) as err:
        per_rank_batch(global_batch, world, accumulate)
    assert str(err.value).startswith(f"data.global_batch_size={global_batch} does not divide over {world} processes")
    assert str(err.value).endswith(tail)


def test_resolve_batch_size_sets_data_batch_size(run_cfg):
    assert resolve_batch_size(run_cfg, 2) is run_cfg  # no global batch: unchanged
    cfg = run_cfg.replace(data=dataclasses.replace(run_cfg.data, global_batch_size=12),
                          trainer=dataclasses.replace(run_cfg.trainer, accumulate_grad_batches=3))
    assert resolve_batch_size(cfg, 2).data.batch_size == 2  # 12 / (2 x 3)
    unset = cfg.replace(trainer=dataclasses.replace(run_cfg.trainer, accumulate_grad_batches=None))
    assert resolve_batch_size(unset, 2).data.batch_size == 6  # accumulate unset: 1


@pytest.mark.parametrize("devices,nodes,accumulate,global_batch,problem", [
    (4, 2, 1, 16, None), (4, 2, 1, 12, "over 8 processes"), (1, 1, 2, 5, "over 1 processes"),
    (4, None, None, 4, None), (4, None, None, 6, "over 4 processes"), (3, 1, 2, 6, None),
    ("auto", 1, 1, 7, None), (0, 1, 1, 7, None), (-1, 1, 1, 7, None), (4, 1, 1, None, None),
])
def test_static_batch_problems_when_the_config_fixes_the_world(devices, nodes, accumulate, global_batch, problem):
    found = static_batch_problems(fake_cfg(devices=devices, nodes=nodes, accumulate=accumulate,
                                           global_batch=global_batch))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


# ---- world ----------------------------------------------------------------------------------
@pytest.mark.parametrize("devices,nodes,accelerator,visible,world", [
    (2, 3, "gpu", 8, 6), (1, 2, "gpu", 8, 2), (4, None, "gpu", 8, 4), ([0, 1], 2, "gpu", 8, 4),
    ((0, 1, 2), 1, "gpu", 8, 3), ("auto", 2, "cpu", 8, 2), ("auto", 2, "gpu", 4, 8), ("auto", 2, "gpu", 0, 2),
    (-1, 1, "gpu", 4, 4), (0, 3, "cpu", 8, 3),
])
def test_world_size_from_the_trainer(clean_env, devices, nodes, accelerator, visible, world):
    clean_env.setattr(torch.cuda, "device_count", lambda: visible)
    assert world_size_of(fake_cfg(devices=devices, nodes=nodes, accelerator=accelerator)) == world


def test_world_size_from_the_launcher_first(clean_env):
    cfg = fake_cfg(devices=2)
    clean_env.setenv("SLURM_NTASKS", "3")
    assert world_size_of(cfg) == 3
    clean_env.setenv("WORLD_SIZE", "6")
    assert world_size_of(cfg) == 6
    clean_env.setenv("WORLD_SIZE", "")
    assert world_size_of(cfg) == 3


# ---- ddp --------------------------------------------------------------------------------------
def test_ddp_defaults_reach_lightning():
    """Every encoder runs every step: no unused-parameter search, no static graph."""
    assert dataclasses.asdict(DDPOptions()) == {
        "find_unused_parameters": False, "static_graph": False, "gradient_as_bucket_view": False,
        "process_group_backend": None, "timeout_s": 600}
    lightning = DDPStrategy(DDPOptions(static_graph=True, timeout_s=30), fake_cfg()).lightning()
    assert lightning._ddp_kwargs == {"find_unused_parameters": False, "static_graph": True,
                                     "gradient_as_bucket_view": False}
    assert lightning._process_group_backend == "gloo" and lightning._timeout == timedelta(seconds=30)


# ---- deepspeed JSON ------------------------------------------------------------------------
ZERO2 = {"stage": 2, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": 200_000_000,
         "allgather_bucket_size": 200_000_000}


def test_deepspeed_json_of_the_default_options():
    assert deepspeed_config(DeepSpeedOptions(), fake_cfg("bf16-mixed", batch_size=3)) == {
        "train_micro_batch_size_per_gpu": 3, "gradient_clipping": 0.0, "zero_allow_untested_optimizer": True,
        "zero_optimization": ZERO2, "steps_per_print": 2**31 - 1, "wall_clock_breakdown": False,
        "bf16": {"enabled": True}}


def test_deepspeed_json_of_zero3_offload_fp16_by_tokens():
    options = DeepSpeedOptions(stage=3, offload_optimizer=True, offload_parameters=True, reduce_bucket_size=7)
    ds = deepspeed_config(options, fake_cfg("16-mixed", "gpu", clip=0.5, batching="tokens", rows=5))
    assert ds["train_micro_batch_size_per_gpu"] == 5 and ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"] == {
        "stage": 3, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": 7,
        "stage3_prefetch_bucket_size": 50_000_000, "stage3_param_persistence_threshold": 100_000,
        "stage3_max_live_parameters": 1_000_000_000, "stage3_gather_16bit_weights_on_model_save": False,
        "offload_optimizer": {"device": "cpu", "pin_memory": True}, "offload_param": {"device": "cpu", "pin_memory": True}}
    assert ds["fp16"] == {"enabled": True, "loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000,
                          "hysteresis": 2, "min_loss_scale": 1}
    assert "bf16" not in ds


def test_no_pinned_memory_on_a_cpu_run_and_no_precision_section_in_fp32():
    ds = deepspeed_config(DeepSpeedOptions(offload_optimizer=True), fake_cfg("32-true"))
    assert ds["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert "bf16" not in ds and "fp16" not in ds and precision_section("32-true") == {}
    assert zero_section(DeepSpeedOptions(offload_optimizer=True))["offload_optimizer"]["pin_memory"] is True


def test_deepspeed_parser_accepts_and_rejects():
    ds = {"train_micro_batch_size_per_gpu": 3}
    assert check_deepspeed_config(ds) == [] and ds == {"train_micro_batch_size_per_gpu": 3}
    assert check_deepspeed_config({"train_micro_batch_size_per_gpu": 3, "train_batch_size": 7}) == [
        "DeepSpeed rejects the generated config (strategy.*): Check batch related parameters. train_batch_size is "
        "not equal to micro_batch_per_gpu * gradient_acc_step * world_size 7 != 3 * 1 * 1"]
    bad = {"stage": 3, "reduce_bucket_size": -1, "allgather_bucket_size": -1, "stage3_prefetch_bucket_size": -1,
           "stage3_param_persistence_threshold": -1, "stage3_max_live_parameters": -1}
    assert check_deepspeed_config({"train_micro_batch_size_per_gpu": 3, "zero_optimization": bad}) == [
        "DeepSpeed rejects the generated config (strategy.*): "  # the first 4 of 5 errors
        "reduce_bucket_size: Input should be greater than 0 (got -1); "
        "allgather_bucket_size: Input should be greater than or equal to 0 (got -1); "
        "stage3_prefetch_bucket_size: Input should be greater than or equal to 0 (got -1); "
        "stage3_param_persistence_threshold: Input should be greater than or equal to 0 (got -1)"]


def test_without_deepspeed_the_check_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed.runtime.config", None)
    [problem] = check_deepspeed_config({"train_micro_batch_size_per_gpu": 3})
    assert problem.startswith("strategy=deepspeed needs the deepspeed package: ")


def test_the_json_is_kept_beside_the_run(tmp_path):
    path = write_deepspeed_config({"stage": 2}, tmp_path / "new" / "sub" / "ds.json")
    assert path == tmp_path / "new" / "sub" / "ds.json" and path.read_text() == '{\n  "stage": 2\n}\n'
    assert write_deepspeed_config({}, tmp_path / "new" / "again.json").read_text() == "{}\n"  # the folder exists
    DeepSpeedStrategy(DeepSpeedOptions(), fake_cfg("bf16-mixed")).write_files(tmp_path / "run")
    written = json.loads((tmp_path / "run" / "deepspeed.json").read_text())
    assert written["zero_optimization"] == ZERO2


# ---- deepspeed strategy --------------------------------------------------------------------
def ds_strategy(cfg=None, **options):
    return DeepSpeedStrategy(DeepSpeedOptions(**options), cfg or fake_cfg("bf16-mixed"))


@pytest.mark.parametrize("make", [
    lambda: DDPStrategy(DDPOptions(process_group_backend="nccl", timeout_s=75), fake_cfg(accelerator="gpu")),
    lambda: ds_strategy(fake_cfg("bf16-mixed", "gpu"), process_group_backend="nccl", timeout_s=75),
    lambda: FSDPStrategy(FSDPOptions(process_group_backend="nccl", timeout_s=75), fake_cfg(accelerator="gpu")),
])
def test_each_strategy_starts_the_watchdog_before_its_process_group(clean_env, monkeypatch, make):
    monkeypatch.setattr("omnitrain.parallel.fsdp.strategy.block_types", lambda cfg: {nn.Linear})
    make().lightning()
    assert [os.environ.get(n) for n in WATCHDOG] == ["1", None, "1", "75"]


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_zero_stage_passes_the_checks(stage):
    assert ds_strategy(stage=stage).check() == []
    assert ds_strategy(stage=stage).plan_row == f"zero{stage}"
    assert ds_strategy(stage=stage).shards_parameters is (stage == 3)


@pytest.mark.parametrize("cfg,options,problem", [
    (None, {"stage": 0}, "strategy.stage must be 1, 2 or 3 (ZeRO stage), got 0"),
    (None, {"offload_parameters": True}, "strategy.offload_parameters needs ZeRO stage 3 (strategy.stage=2); use "
     "strategy=deepspeed_zero3_offload, or offload only the optimizer"),
    (fake_cfg("64-true"), {}, "DeepSpeed does not support trainer.precision=64-true; use one of "
     "['16-mixed', '16-true', '32', '32-true', 'bf16-mixed', 'bf16-true']"),
    (fake_cfg(clip=1.0, clip_algorithm="value"), {},
     "DeepSpeed clips gradients by norm only: remove trainer.gradient_clip_algorithm=value"),
    (None, {"reduce_bucket_size": -5}, "DeepSpeed rejects the generated config (strategy.*): reduce_bucket_size: "
     "Input should be greater than 0 (got -5)"),
])
def test_deepspeed_checks(cfg, options, problem):
    assert ds_strategy(cfg, **options).check() == [problem]


def test_deepspeed_plan_row_compute_kind_and_optimizer():
    assert ds_strategy(stage=3, offload_parameters=True).plan_row == "zero3_offload"
    assert ds_strategy().compute_kind() == "bf16"  # DeepSpeed casts the model itself
    assert ds_strategy(fake_cfg("32-true")).compute_kind() == "32"
    assert ds_strategy().optimizer([], 1e-3, (0.9, 0.95), 1e-8) is None and ds_strategy().checkpoint_io() is None


def test_zero3_builds_with_gathering_inits_and_loads_gathered(monkeypatch):
    import deepspeed

    gathered = []
    monkeypatch.setattr(deepspeed.zero, "GatheredParameters",
                        lambda params, modifier_rank: gathered.append((params, modifier_rank)) or nullcontext())
    original, model = torch.nn.init.zeros_, nn.Linear(2, 1)
    assert isinstance(ds_strategy(stage=2).construction(), nullcontext)
    assert isinstance(ds_strategy(stage=2).loading(model), nullcontext)
    with ds_strategy(stage=3).construction():
        assert torch.nn.init.zeros_ is not original and torch.nn.init.zeros_.__wrapped__ is original
    assert torch.nn.init.zeros_ is original
    with ds_strategy(stage=3).loading(model):
        assert gathered == [([model.weight, model.bias], 0)]  # every parameter whole, rank 0's writes kept


def test_deepspeed_skips_non_finite_steps_itself():
    strategy, trainer = ds_strategy(), linear_trainer(float("inf"))
    assert strategy.local_grads_finite(trainer) is True
    strategy.drop_step(trainer)
    assert trainer.lightning_module.weight.grad is not None  # left to the engine
    engine = SimpleNamespace(optimizer=SimpleNamespace(overflow=True))
    assert strategy.step_was_skipped(SimpleNamespace(strategy=SimpleNamespace(deepspeed_engine=engine)), False)
    engine.optimizer = SimpleNamespace()  # an optimizer without the flag never skipped
    assert not strategy.step_was_skipped(SimpleNamespace(strategy=SimpleNamespace(deepspeed_engine=engine)), False)


def test_deepspeed_memory_rows():
    options = DeepSpeedOptions(reduce_bucket_size=10, allgather_bucket_size=20, prefetch_bucket_size=30)
    # buckets: stages 1-2 2 x (10 + 20) = 60; stage 3 4 x 50 + 2 x (10 + 30) = 280; shards (2000 + 8400) / 4 = 2600
    assert DeepSpeedStrategy.state_rows(STATS, 4, 2, options) == {
        "zero1": (2000.0 + 1200.0 + 1800.0 + 60.0, 0.0), "zero2": (2000.0 + 2100.0 + 60.0, 0.0),
        "zero3": (2600.0 + 280.0, 0.0), "zero3_offload": (280.0, 2600.0 * 2)}
    # default buckets: 2 x 400M for stages 1-2, 4 x 50 + 2 x 250M for stage 3
    assert DeepSpeedStrategy.state_rows(STATS, 4, 2, None)["zero2"] == (4100.0 + 800_000_000.0, 0.0)
    assert DeepSpeedStrategy.state_rows(STATS, 4, 2, None)["zero3"] == (2600.0 + 200.0 + 500_000_000.0, 0.0)


def test_zero_shards_resume_only_on_the_same_world_size(clean_env):
    strategy = ds_strategy(fake_cfg("bf16-mixed", devices=2))
    assert strategy.resume_problems(SimpleNamespace(kind="deepspeed", path="ck", world=2)) == []
    assert strategy.resume_problems(SimpleNamespace(kind="deepspeed", path="ck", world=None)) == []
    assert strategy.resume_problems(SimpleNamespace(kind="deepspeed", path="ck", world=4)) == [
        "'ck' holds ZeRO shards for 4 processes but this run has 2; resume on 4 processes, or export it first "
        "(omnitrain export ck BUNDLE) and start a new run from it with init_from=BUNDLE"]
    [problem] = strategy.resume_problems(SimpleNamespace(kind="file", path="ck", world=4))
    assert problem.startswith("'ck' was written by a file strategy")


def test_deepspeed_lightning_gets_the_generated_json():
    lightning = ds_strategy(timeout_s=30).lightning()
    assert lightning.config == deepspeed_config(DeepSpeedOptions(), fake_cfg("bf16-mixed"))
    assert lightning._timeout == timedelta(seconds=30)


# ---- fsdp -------------------------------------------------------------------------------------
def fsdp_cfg(precision="32-true", accelerator="cpu", lora=None, freeze=(), codec=1.0, flow=1.0):
    cfg = fake_cfg(precision, accelerator)
    cfg.lora, cfg.optim, cfg.loss = lora, SimpleNamespace(freeze=list(freeze)), SimpleNamespace(codec=codec, flow=flow)
    return cfg


def test_fsdp_defaults_and_plan_rows():
    assert dataclasses.asdict(FSDPOptions()) == {
        "sharding_strategy": "FULL_SHARD", "state_dict_type": "sharded", "cpu_offload": False,
        "activation_checkpointing": False, "process_group_backend": None, "timeout_s": 600}
    full, grad_op = FSDPStrategy(FSDPOptions(), fsdp_cfg()), FSDPStrategy(FSDPOptions("SHARD_GRAD_OP"), fsdp_cfg())
    assert (full.plan_row, grad_op.plan_row) == ("fsdp", "fsdp_grad_op")
    assert full.shards_parameters is True and full.recomputes is False and full.checkpoint_io() is None
    assert FSDPStrategy(FSDPOptions(activation_checkpointing=True), fsdp_cfg()).recomputes is True


@pytest.mark.parametrize("options,accelerator,problems", [
    (FSDPOptions(), "cpu", []),
    (FSDPOptions(state_dict_type="full"), "gpu", []),
    (FSDPOptions(sharding_strategy="ZERO"), "cpu",
     ["strategy.sharding_strategy must be one of ['FULL_SHARD', 'HYBRID_SHARD', 'NO_SHARD', 'SHARD_GRAD_OP']"]),
    (FSDPOptions(state_dict_type="local"), "cpu", ["strategy.state_dict_type must be 'sharded' or 'full'"]),
    (FSDPOptions(state_dict_type="full"), "cpu",
     ["strategy.state_dict_type=full crashes torch FSDP on the CPU while saving; use strategy.state_dict_type=sharded "
      "(omnitrain export reads sharded checkpoints)"]),
])
def test_fsdp_checks(options, accelerator, problems):
    assert FSDPStrategy(options, fsdp_cfg(accelerator=accelerator)).check() == problems


@pytest.mark.parametrize("lora_slots,trainable,freeze,codec,flow,refused", [
    (["thinker"], [], ["audio_encoder", "vision_encoder"], 0.0, 0.0, True),  # talker, dit off: all frozen
    (["thinker"], [], ["audio_encoder", "vision_encoder", "talker", "dit"], 1.0, 1.0, True),
    (["thinker"], [], ["audio_encoder", "vision_encoder"], 1.0, 0.0, False),  # the talker trains
    (["thinker"], [], ["audio_encoder", "vision_encoder"], 0.0, 1.0, False),  # the DiT trains
    (["thinker"], [], ["vision_encoder"], 0.0, 0.0, False),  # the audio encoder trains
    (["thinker"], ["norm.weight"], ["audio_encoder", "vision_encoder"], 0.0, 0.0, False),
    ([], [], ["audio_encoder", "vision_encoder", "thinker"], 0.0, 0.0, False),  # no LoRA
])
def test_fsdp_refuses_a_lora_run_with_nothing_trainable_outside_the_blocks(lora_slots, trainable, freeze, codec,
                                                                           flow, refused):
    lora = SimpleNamespace(slots=lora_slots, trainable=trainable)
    problems = FSDPStrategy(FSDPOptions(), fsdp_cfg(lora=lora, freeze=freeze, codec=codec, flow=flow)).check()
    assert problems == ([] if not refused else [
        "strategy=fsdp cannot save this LoRA run: every parameter outside the Transformer blocks is frozen, and "
        "torch FSDP's state_dict fails on such a model. Use strategy=deepspeed_zero2 (or deepspeed_zero3), leave "
        "another slot training, or keep one such parameter training, e.g. lora.trainable=[norm.weight]"])
    assert FSDPStrategy(FSDPOptions(), fake_cfg()).check() == []  # a config without a lora section


def test_fsdp_wraps_the_default_plugins_blocks(run_cfg):
    """The default model: qwen2 thinker and patch ViT (TransformerBlock), full_dit (AdaLNZeroBlock)."""
    from omnitrain.nn.blocks import TransformerBlock
    from omnitrain_plugins.full_dit import AdaLNZeroBlock

    assert block_types(run_cfg) == {TransformerBlock, AdaLNZeroBlock}
    lightning = FSDPStrategy(FSDPOptions(timeout_s=30), run_cfg).lightning()
    assert set(lightning.kwargs["auto_wrap_policy"]._module_classes) == {TransformerBlock, AdaLNZeroBlock}
    assert lightning.kwargs["use_orig_params"] is True and lightning._timeout == timedelta(seconds=30)


def test_fsdp_clips_by_the_global_norm_itself():
    strategy, clipped = FSDPStrategy(FSDPOptions(), fsdp_cfg()), []
    trainer = SimpleNamespace(model=SimpleNamespace(clip_grad_norm_=clipped.append))
    assert strategy.trainer_args({"max_steps": 3, "gradient_clip_val": 0.5}) == {"max_steps": 3,
                                                                                  "gradient_clip_val": None}
    strategy.before_optimizer_step(trainer, None)
    strategy.before_optimizer_step(trainer, 0.5)
    assert clipped == [0.5]


def test_fsdp_compute_kind_and_memory_rows():
    assert FSDPStrategy(FSDPOptions(), fsdp_cfg("bf16-mixed")).compute_kind() == "bf16"
    assert FSDPStrategy(FSDPOptions(), fsdp_cfg("32-true")).compute_kind() == "32"
    # the largest unit gathered whole: 4 x 50 = 200
    assert FSDPStrategy.state_rows(STATS, 4, 2, None) == {"fsdp": ((2000.0 + 8400.0) / 4 + 200.0, 0.0),
                                                          "fsdp_grad_op": (2000.0 + 8400.0 / 4 + 200.0, 0.0)}


def test_fsdp_full_parameters_gathers_the_flat_shards():
    """One gloo process: FSDP flattens the Linear's weight and bias into one 8-element shard."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from tests.helpers import one_process_group

    strategy = FSDPStrategy(FSDPOptions(), fsdp_cfg())
    with strategy.full_parameters(None), strategy.full_parameters(SimpleNamespace(strategy=SimpleNamespace(model=None))):
        pass
    with one_process_group():
        wrapped = FSDP(nn.Linear(3, 2), device_id=torch.device("cpu"))
        assert [p.shape for p in wrapped.parameters()] == [(8,)]
        plain = SimpleNamespace(model=wrapped, mixed_precision_config=None, root_device=torch.device("cpu"))
        with strategy.full_parameters(SimpleNamespace(strategy=plain)):
            assert [p.shape for p in wrapped.parameters()] == [(2, 3), (2,)] and not torch.is_autocast_enabled("cpu")
        mixed = SimpleNamespace(model=wrapped, mixed_precision_config=SimpleNamespace(param_dtype=torch.bfloat16),
                                root_device=torch.device("cpu"))
        with strategy.full_parameters(SimpleNamespace(strategy=mixed)):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        unset = SimpleNamespace(model=wrapped, mixed_precision_config=SimpleNamespace(param_dtype=None),
                                root_device=torch.device("cpu"))
        with strategy.full_parameters(SimpleNamespace(strategy=unset)):
            assert not torch.is_autocast_enabled("cpu")
        assert [p.shape for p in wrapped.parameters()] == [(8,)]
