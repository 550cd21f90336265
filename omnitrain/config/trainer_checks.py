"""The Lightning Trainer arguments omnitrain reads, checked before anything starts: a
mistyped or out-of-range value (``trainer.max_steps=abc``, ``trainer.devices=0``) is a
config error naming the key and what it accepts, not a traceback from deep in Lightning."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from omnitrain.config.suggest import suggest

PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "bf16", "16-mixed", "16-true", "16", "64-true", "64")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto", "mps")
OWNED = {
    "logger": "the logger section",
    "callbacks": "omnitrain's callbacks (checkpoint.*)",
    "strategy": "the strategy group (strategy=ddp)",
    "default_root_dir": "run_dir",
    "enable_checkpointing": "checkpoint.every_n_steps",
}


def _int(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _devices(v: Any) -> bool:
    return v == "auto" or _int(1)(v) or (isinstance(v, list | tuple) and bool(v) and all(_int(0)(d) for d in v))


def _fraction_or_count(v: Any) -> bool:
    return _int(0)(v) or (isinstance(v, float) and 0.0 <= v <= 1.0)


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_steps": (_int(1), "an integer >= 1"),
    "num_nodes": (_int(1), "an integer >= 1"),
    "devices": (_devices, "'auto', an integer >= 1, or a list of device indices"),
    "accumulate_grad_batches": (_int(1), "an integer >= 1"),
    "log_every_n_steps": (_int(1), "an integer >= 1"),
    "precision": (lambda v: str(v) in PRECISIONS, f"one of {list(PRECISIONS)}"),
    "accelerator": (lambda v: v in ACCELERATORS, f"one of {list(ACCELERATORS)}"),
    "gradient_clip_val": (lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v >= 0),
                          "null or a number >= 0"),
    "val_check_interval": (lambda v: v is None or _int(1)(v) or (isinstance(v, float) and 0.0 < v <= 1.0),
                           "an integer >= 1 (steps) or a fraction in (0, 1]"),
    "limit_val_batches": (lambda v: v is None or _fraction_or_count(v), "an integer >= 0 or a fraction in [0, 1]"),
}


def trainer_problems(node: Mapping[str, Any]) -> list[str]:
    from lightning.pytorch import Trainer

    params = set(inspect.signature(Trainer.__init__).parameters) - {"self"}
    problems = []
    for key in node:
        if key in OWNED:
            problems.append(f"trainer.{key} is set by omnitrain; use {OWNED[key]} instead")
        elif key not in params:
            problems.append(f"unknown Lightning Trainer argument 'trainer.{key}'{suggest(key, params, 'trainer.')}")
        elif key in RULES and not RULES[key][0](node[key]):
            problems.append(f"trainer.{key}={node[key]!r}: must be {RULES[key][1]}")
    return problems
