"""How the ``lora`` section ties to the rest of the config (checked before anything is built)."""

from __future__ import annotations

from omegaconf import DictConfig

from omnitrain.slots import MODEL_SLOTS


def check_lora(cfg: DictConfig) -> list[str]:
    """Problems of ``lora.slots``: unknown slots, or slots that ``optim.freeze`` also
    freezes (their adapters would never train)."""
    lora = cfg.get("lora")
    if lora is None:
        return []
    slots = list(lora.get("slots") or [])
    problems = [f"lora.slots: '{s}' is not a trainable slot; use some of {list(MODEL_SLOTS)}"
                for s in slots if s not in MODEL_SLOTS]
    frozen = set((cfg.get("optim") or {}).get("freeze") or [])
    problems += [f"lora.slots: '{s}' is also in optim.freeze, so its adapters would not train; "
                 "remove it from one of them" for s in slots if s in frozen]
    if slots and not list(lora.get("targets") or []):
        problems.append("lora.targets is empty: name the Linear layers to adapt, e.g. [q_proj,v_proj]")
    return problems
