"""The run config: composed from configs/ and recipes/ by Hydra, checked against every
schema, and by the checks each part of omnitrain brings for the settings it owns.

``omnitrain.config`` composes and knows the schemas but imports nothing above itself;
this module, above the owners, hands it their checks. Every config error surfaces here,
before any data is read or model built.
"""

from __future__ import annotations

from omegaconf import DictConfig

from omnitrain.config.compose import compose_run
from omnitrain.model.flow_matching import check_sampler
from omnitrain.parallel.base import check_strategy
from omnitrain.parallel.global_batch import static_batch_problems
from omnitrain.training.tasks import check_task

OWNER_CHECKS = (check_strategy, static_batch_problems, check_sampler, check_task)


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    """The validated run config. Raises ``ConfigError`` with a message that says what to change."""
    return compose_run(overrides, config_name, OWNER_CHECKS)
