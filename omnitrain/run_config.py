"""The run config: composed from configs/ and recipes/ by Hydra, checked against every
schema and by the checks each part of omnitrain brings for the settings it owns, then
made once into the typed ``RunConfig`` every consumer reads.

``omnitrain.config`` composes and knows the schemas but imports nothing above itself;
this module, above the owners, hands it their checks. Every config error surfaces here,
before any data is read or model built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from omnitrain.config.compose import compose_run
from omnitrain.config.eval_checks import check_eval
from omnitrain.config.schema import SCALAR_KEYS, SECTION_SCHEMAS, schema_node
from omnitrain.config.task_checks import check_task
from omnitrain.config.typed import RunConfig, StrategyChoice, TrainerArgs
from omnitrain.config.validate import ConfigError
from omnitrain.parallel.base import check_strategy, strategy_options
from omnitrain.parallel.global_batch import static_batch_problems
from omnitrain.plugin_loading import load_plugins
from omnitrain.registry import PluginChoice, plugin_config
from omnitrain.slots import SLOTS

OWNER_CHECKS = (check_strategy, static_batch_problems, check_task, check_eval)


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> RunConfig:
    """The validated, typed run config. Raises ``ConfigError`` saying what to change."""
    raw = compose_run(overrides, config_name)  # keys, types, plugins: every schema
    try:
        run = typed(raw, validate_plugins=True)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"invalid config:\n  - {exc.args[0] if exc.args else exc}") from exc
    problems = [problem for check in OWNER_CHECKS for problem in check(run)]
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return run


def load_config(data: Mapping[str, Any] | DictConfig) -> RunConfig:
    """A stored config (a checkpoint's, a bundle's ``config.yaml``) as a ``RunConfig``."""
    cfg = data if isinstance(data, DictConfig) else OmegaConf.create(dict(data))
    load_plugins(list(cfg.get("plugins") or []))
    return typed(cfg)


def typed(cfg: DictConfig, validate_plugins: bool = False) -> RunConfig:
    values: dict[str, Any] = {}
    for key in SCALAR_KEYS:
        value = cfg.get(key)
        values[key] = tuple(value) if key == "plugins" else value
    for name, schema in SECTION_SCHEMAS.items():
        node = OmegaConf.merge(schema_node(schema), cfg.get(name) or {})
        values[name] = OmegaConf.to_object(node)
    for slot in SLOTS:
        node = OmegaConf.to_container(cfg[slot], resolve=True)
        name = node.pop("name")
        config = plugin_config(slot, {"name": name, **node}) if validate_plugins else None
        values[slot] = PluginChoice(slot, name, node, config)
    values["strategy"] = StrategyChoice(cfg.strategy.name, strategy_options(cfg.strategy))
    values["trainer"] = TrainerArgs.from_dict(OmegaConf.to_container(cfg.trainer, resolve=True))
    return RunConfig(**values)
