"""Config check of the named losses: every ``loss.weights`` key is a loss some chosen
plugin declares (``SlotModule.named_losses``), and no two slots declare one name (the run's
named losses are one ``Registry``, as plugins, strategies and formats are)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from omnitrain.name_registry import Registry, RegistryError
from omnitrain.registry import plugin_config, registry
from omnitrain.slots import MODEL_SLOTS

CORE_LOSSES = ("text", "codec", "flow")  # weighted by loss.text, loss.codec, loss.flow
RESERVED = (*CORE_LOSSES, "loss")


def declared_by_slot(cfg: Any) -> dict[str, dict[str, float]]:
    """Each model slot's declared named losses with their default coefficients, from the
    chosen plugins' classes and configs (no model is built)."""
    declared = {}
    for slot in MODEL_SLOTS:
        node = getattr(cfg, slot)
        cls = registry(slot).get(node.name).cls
        names = dict(cls.named_losses(plugin_config(slot, node)))
        if names:
            declared[slot] = names
    return declared


def declared_losses(declared: dict[str, dict[str, float]]) -> tuple[Registry[float], list[str]]:
    """The run's named losses in one ``Registry`` (name -> default coefficient, registered
    by the slot that declares it), and the declarations it refused: a core loss's name, or
    a name two slots declare."""
    losses: Registry[float] = Registry("named loss", "(declared by the run's plugins in named_losses())")
    problems = []
    for slot, names in declared.items():
        for name, coefficient in names.items():
            if name in RESERVED and not (slot == "talker" and name == "codec"):
                problems.append(f"{slot} declares a loss named '{name}', which the core computes itself: "
                                f"rename it in {slot}'s named_losses()")
            elif name not in CORE_LOSSES:
                try:
                    losses.add(name, coefficient, origin=slot)
                except RegistryError as exc:
                    problems.append(f"{exc} (in named_losses())")
    return losses, problems


def loss_weight_problems(declared: dict[str, dict[str, float]], overrides: dict[str, float]) -> list[str]:
    """What is wrong with the declared names and ``loss.weights``, one line each."""
    losses, problems = declared_losses(declared)
    for name, weight in overrides.items():
        if not isinstance(weight, int | float) or weight < 0:
            problems.append(f"loss.weights.{name}={weight!r}: a coefficient is a number >= 0")
        if name in CORE_LOSSES:
            problems.append(f"loss.weights.{name}: the core's losses are weighted by loss.{name}")
        elif name not in losses:
            problems.append(f"loss.weights.{name}: no plugin of this run returns it: {losses.unknown(name)}")
    return problems


def check_loss_weights(cfg: DictConfig) -> list[str]:
    loss = cfg.get("loss")
    overrides = dict(loss.get("weights") or {}) if loss is not None else {}
    return loss_weight_problems(declared_by_slot(cfg), overrides)
