"""Losses by name beyond the core's three: a plugin declares each with its default
coefficient (``SlotModule.named_losses``), ``loss.weights.<name>`` may override it, and the
total adds each one once, weighted. A name nobody declared, or one two slots both return,
is an error that says which plugin to change."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from omnitrain.config.loss_checks import CORE_LOSSES, declared_by_slot, loss_weight_problems


def declared_loss_weights(cfg: Any) -> dict[str, float]:
    """Coefficient of every named loss the run's plugins may return (``loss.weights``
    overriding their defaults); raises on the problems ``loss_weight_problems`` finds."""
    declared = declared_by_slot(cfg)
    overrides = dict(cfg.loss.weights)
    problems = loss_weight_problems(declared, overrides)
    if problems:
        raise ValueError("named losses:\n  - " + "\n  - ".join(problems))
    weights = {name: float(w) for names in declared.values() for name, w in names.items() if name not in CORE_LOSSES}
    return {**weights, **{k: float(v) for k, v in overrides.items()}}


def add_named(into: dict[str, Tensor], named: dict[str, Tensor], source: str) -> None:
    """Add ``named`` to ``into``; a name already there (from another slot) is an error."""
    for name, value in named.items():
        if name in into:
            raise ValueError(f"{source} returned a loss named '{name}', which another part of the model "
                             f"returns too: rename one in its named_losses()")
        into[name] = value


def total_loss(losses: dict[str, Tensor], w: Any, weights: dict[str, float]) -> Tensor:
    """loss.text x text + loss.codec x codec + loss.flow x flow + each named loss times its
    coefficient; a named loss without a declared coefficient is an error."""
    total = w.text * losses["text"] + w.codec * losses.get("codec", 0.0) + w.flow * losses.get("flow", 0.0)
    for name, value in losses.items():
        if name in CORE_LOSSES:
            continue
        if name not in weights:
            raise ValueError(f"a plugin returned a loss named '{name}' that no plugin declares: add it to the "
                             f"plugin's named_losses() with its default coefficient (declared: {sorted(weights)})")
        total = total + weights[name] * value
    return total
