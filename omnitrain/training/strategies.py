"""Distribution strategies by name, built from the ``strategy`` config group.

Each builder turns its config section into a Lightning strategy object; each name has
a fixed set of options, and ``check_strategy`` reports every problem (unknown option,
impossible stage/offload/precision combination, a DeepSpeed config DeepSpeed itself
rejects) when the config is composed, before any data is read or model built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from omegaconf import DictConfig, OmegaConf

from omnitrain.training.deepspeed_config import check_deepspeed_config, deepspeed_config

FP16 = {"16", "16-mixed", "16-true"}
DEEPSPEED_PRECISIONS = {"32", "32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"}


def _on_cpu(cfg: DictConfig) -> bool:
    return cfg.trainer.get("accelerator") == "cpu"


def _backend(opts: dict, cfg: DictConfig) -> str | None:
    backend = opts.pop("process_group_backend", None)
    return "gloo" if backend is None and _on_cpu(cfg) else backend


def _auto(opts: dict, cfg: DictConfig) -> Any:
    return "auto"


def _ddp(opts: dict, cfg: DictConfig) -> Any:
    from lightning.pytorch.strategies import DDPStrategy

    backend = _backend(opts, cfg)
    timeout = timedelta(seconds=opts.pop("timeout_s", 1800))
    return DDPStrategy(process_group_backend=backend, timeout=timeout, **opts)


def _deepspeed(opts: dict, cfg: DictConfig) -> Any:
    from omnitrain.training.cpu_strategies import OmniDeepSpeedStrategy

    return OmniDeepSpeedStrategy(
        config=deepspeed_config(cfg),
        process_group_backend=_backend(opts, cfg),
        timeout=timedelta(seconds=opts.get("timeout_s", 1800)),
    )


def wrap_classes(names: list[str]) -> set[type]:
    """``["omnitrain.nn.blocks.TransformerBlock"]`` -> the classes FSDP wraps one by one."""
    classes = set()
    for name in names:
        module, _, attr = name.rpartition(".")
        classes.add(getattr(importlib.import_module(module), attr))
    return classes


def _fsdp(opts: dict, cfg: DictConfig) -> Any:
    from omnitrain.training.cpu_strategies import OmniFSDPStrategy

    return OmniFSDPStrategy(
        sharding_strategy=opts["sharding_strategy"],
        state_dict_type=opts["state_dict_type"],
        cpu_offload=opts["cpu_offload"],
        auto_wrap_policy=wrap_classes(list(opts["wrap"])),
        activation_checkpointing_policy=(
            wrap_classes(list(opts["wrap"])) if opts["activation_checkpointing"] else None
        ),
        # per-slot parameter groups (learning rates, freezing) need the original parameters
        use_orig_params=True,
        process_group_backend=_backend(opts, cfg),
        timeout=timedelta(seconds=opts.get("timeout_s", 1800)),
    )


BUILDERS: dict[str, Callable[[dict, DictConfig], Any]] = {
    "auto": _auto, "ddp": _ddp, "deepspeed": _deepspeed, "fsdp": _fsdp,
}
OPTIONS: dict[str, set[str]] = {
    "auto": set(),
    "ddp": {"find_unused_parameters", "process_group_backend", "timeout_s", "static_graph",
            "gradient_as_bucket_view"},
    "deepspeed": {"stage", "offload_optimizer", "offload_parameters", "reduce_bucket_size",
                  "allgather_bucket_size", "prefetch_bucket_size", "param_persistence_threshold",
                  "max_live_parameters", "overlap_comm", "contiguous_gradients",
                  "process_group_backend", "timeout_s"},
    "fsdp": {"sharding_strategy", "state_dict_type", "cpu_offload", "wrap",
             "activation_checkpointing", "process_group_backend", "timeout_s"},
}
FSDP_SHARDING = {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"}


def _check_combinations(name: str, node: DictConfig, cfg: DictConfig) -> list[str]:
    trainer = cfg.get("trainer") or {}
    precision = str(trainer.get("precision", "32-true"))
    problems = []
    if precision in FP16 and _on_cpu(cfg):
        problems.append(
            f"trainer.precision={precision} (fp16) cannot run on the CPU; use trainer.precision=32-true "
            "or bf16-mixed on CPU, or trainer=gpu for fp16"
        )
    if name == "deepspeed":
        stage = node.get("stage")
        if stage not in (1, 2, 3):
            problems.append(f"strategy.stage must be 1, 2 or 3 (ZeRO stage), got {stage!r}")
        if node.get("offload_parameters") and stage != 3:
            problems.append(
                f"strategy.offload_parameters needs ZeRO stage 3 (strategy.stage={stage}); use "
                "strategy=deepspeed_zero3_offload, or offload only the optimizer"
            )
        if precision not in DEEPSPEED_PRECISIONS:
            problems.append(
                f"DeepSpeed does not support trainer.precision={precision}; use one of "
                f"{sorted(DEEPSPEED_PRECISIONS)}"
            )
        if trainer.get("gradient_clip_algorithm") == "value":
            problems.append("DeepSpeed clips gradients by norm only: remove trainer.gradient_clip_algorithm=value")
        if not problems:
            problems += check_deepspeed_config(deepspeed_config(cfg))
    if name == "fsdp":
        if node.get("sharding_strategy") not in FSDP_SHARDING:
            problems.append(f"strategy.sharding_strategy must be one of {sorted(FSDP_SHARDING)}")
        if node.get("state_dict_type") not in ("sharded", "full"):
            problems.append("strategy.state_dict_type must be 'sharded' or 'full'")
        elif node.get("state_dict_type") == "full" and _on_cpu(cfg):
            problems.append(
                "strategy.state_dict_type=full crashes torch FSDP on the CPU while saving; use "
                "strategy.state_dict_type=sharded (omnitrain export reads sharded checkpoints)"
            )
        try:
            wrap_classes(list(node.get("wrap") or []))
        except (ImportError, AttributeError, ValueError) as exc:
            problems.append(f"strategy.wrap: cannot import {exc}; give dotted class names")
    return problems


def check_strategy(cfg: DictConfig) -> list[str]:
    node = cfg.strategy
    name = node.get("name")
    if name not in BUILDERS:
        return [f"unknown strategy '{name}'; choose one of {sorted(BUILDERS)} (strategy=<name>)"]
    extra = set(node) - {"name"} - OPTIONS[name]
    problems = [f"strategy={name} has no option '{k}'; options: {sorted(OPTIONS[name])}" for k in sorted(extra)]
    return problems or _check_combinations(name, node, cfg)


def offloads_optimizer(cfg: DictConfig) -> bool:
    """Whether the optimizer step runs on the CPU (ZeRO-Offload needs DeepSpeed's CPU Adam)."""
    return cfg.strategy.get("name") == "deepspeed" and bool(cfg.strategy.get("offload_optimizer"))


def build_strategy(cfg: DictConfig) -> Any:
    opts = OmegaConf.to_container(cfg.strategy, resolve=True)
    name = opts.pop("name")
    return BUILDERS[name](opts, cfg)
