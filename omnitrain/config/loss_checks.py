"""Config check of the named losses: every ``loss.weights`` key is a loss some chosen
plugin declares (``SlotModule.named_losses``), and no two slots declare one name."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

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


def loss_weight_problems(declared: dict[str, dict[str, float]], overrides: dict[str, float]) -> list[str]:
    """What is wrong with the declared names and ``loss.weights``, one line each."""
    problems, owner = [], {}
    for slot, names in declared.items():
        for name in names:
            if name in RESERVED and not (slot == "talker" and name == "codec"):
                problems.append(f"{slot} declares a loss named '{name}', which the core computes itself: "
                                f"rename it in {slot}'s named_losses()")
            elif name in owner:
                problems.append(f"both {owner[name]} and {slot} declare a loss named '{name}': rename one")
            owner[name] = slot
    for name, weight in overrides.items():
        if not isinstance(weight, int | float) or weight < 0:
            problems.append(f"loss.weights.{name}={weight!r}: a coefficient is a number >= 0")
        if name not in owner or name in CORE_LOSSES:
            known = sorted(n for n in owner if n not in CORE_LOSSES)
            hint = f"loss.{name}" if name in CORE_LOSSES else f"one of {known}" if known else "none is declared"
            problems.append(f"loss.weights.{name}: no plugin of this run returns a loss named '{name}' ({hint})")
    return problems


def check_loss_weights(cfg: DictConfig) -> list[str]:
    loss = cfg.get("loss")
    overrides = dict(loss.get("weights") or {}) if loss is not None else {}
    return loss_weight_problems(declared_by_slot(cfg), overrides)
