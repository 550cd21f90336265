"""Distribution strategies by name, built from the ``strategy`` config group.

Each builder turns its config section into an object or name Lightning accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _auto(opts: dict, cfg: DictConfig) -> Any:
    return "auto"


def _ddp(opts: dict, cfg: DictConfig) -> Any:
    from lightning.pytorch.strategies import DDPStrategy

    backend = opts.pop("process_group_backend", None)
    if backend is None and cfg.trainer.get("accelerator") == "cpu":
        backend = "gloo"
    timeout = timedelta(seconds=opts.pop("timeout_s", 1800))
    return DDPStrategy(process_group_backend=backend, timeout=timeout, **opts)


BUILDERS: dict[str, Callable[[dict, DictConfig], Any]] = {"auto": _auto, "ddp": _ddp}
OPTIONS: dict[str, set[str]] = {
    "auto": set(),
    "ddp": {"find_unused_parameters", "process_group_backend", "timeout_s", "static_graph",
            "gradient_as_bucket_view"},
}


def check_strategy(cfg: DictConfig) -> list[str]:
    node = cfg.strategy
    name = node.get("name")
    if name not in BUILDERS:
        return [f"unknown strategy '{name}'; choose one of {sorted(BUILDERS)} (strategy=<name>)"]
    extra = set(node) - {"name"} - OPTIONS[name]
    return [f"strategy={name} has no option '{k}'; options: {sorted(OPTIONS[name])}" for k in sorted(extra)]


def build_strategy(cfg: DictConfig) -> Any:
    opts = OmegaConf.to_container(cfg.strategy, resolve=True)
    name = opts.pop("name")
    return BUILDERS[name](opts, cfg)
