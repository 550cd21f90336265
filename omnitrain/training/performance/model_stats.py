"""Per-slot counts that memory plans and FLOP counts need, read off a (meta) model.

Generic over plugins: parameters are counted per slot module, and attention layers
are found as the core's ``omnitrain.nn.Attention`` modules (width = heads x head dim,
input width = the layer's hidden size). A plugin with its own attention class is
still counted in 6N, just not in the attention term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from omnitrain.config.typed import RunConfig
from omnitrain.model.lora import lora_trains
from omnitrain.nn.attention import Attention
from omnitrain.slots import MODEL_SLOTS
from omnitrain.training.stages.module import frozen_slots


@dataclass
class SlotStats:
    params: int = 0  # unique parameters (a tied weight counted once)
    trainable: int = 0
    embedding: int = 0  # lookup tables: memory, but no matmul FLOPs
    trainable_matmul: int = 0  # trainable parameters outside lookup tables: weight-gradient FLOPs
    attention: list[tuple[int, int]] = field(default_factory=list)  # (hidden, heads*head_dim) per layer
    active: int | None = None  # matmul parameters one position runs through (``active_params``), None: all
    active_trainable: float | None = None  # trainable ones, each times its ``active_share`` (None: not said)

    @property
    def matmul_params(self) -> int:
        return self.params - self.embedding

    @property
    def active_matmul(self) -> int:
        """Matmul parameters one position runs through: all of them, or a MoE's active ones."""
        return self.matmul_params if self.active is None else self.active

    @property
    def active_trainable_matmul(self) -> float:
        """The trainable weights one position runs through: as the slot says (``active_share``),
        else the trainable share of ``active_matmul`` (experts train as the rest of the slot)."""
        if self.active_trainable is not None:
            return self.active_trainable
        if self.active is None or not self.matmul_params:
            return float(self.trainable_matmul)
        return self.trainable_matmul * self.active / self.matmul_params


@dataclass
class ModelStats:
    slots: dict[str, SlotStats]
    largest_layer: int  # most parameters held directly by one module (ZeRO-3 gathers it whole)

    @property
    def params(self) -> int:
        return sum(s.params for s in self.slots.values())

    @property
    def trainable(self) -> int:
        return sum(s.trainable for s in self.slots.values())


def _numel(p: nn.Parameter) -> int:
    return int(getattr(p, "ds_numel", 0) or p.numel())  # ZeRO-3 leaves an empty placeholder


def model_stats(model: nn.Module, cfg: RunConfig) -> ModelStats:
    frozen = set(frozen_slots(cfg))
    seen: set[int] = set()
    slots: dict[str, SlotStats] = {}
    for slot in MODEL_SLOTS:
        module = getattr(model, slot)
        stats = SlotStats()
        says_share = module.active_share("") is not None  # the slot says each weight's share of positions
        stats.active_trainable = 0.0 if says_share else None
        for sub_name, sub in module.named_modules():
            if isinstance(sub, Attention):
                stats.attention.append((sub.q_proj.in_features, sub.num_heads * sub.head_dim))
            for p_name, p in sub.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                n = _numel(p)
                stats.params += n
                trains = slot not in frozen and lora_trains(cfg.lora, slot, f"{sub_name}.{p_name}".lstrip("."))
                stats.trainable += n if trains else 0
                stats.embedding += n if isinstance(sub, nn.Embedding) else 0
                stats.trainable_matmul += n if trains and not isinstance(sub, nn.Embedding) else 0
                if says_share and trains and not isinstance(sub, nn.Embedding):
                    stats.active_trainable += n * module.active_share(f"{sub_name}.{p_name}".lstrip("."))
        active = module.active_params()
        if active is not None and not 0 < active <= stats.matmul_params:
            raise ValueError(f"{slot} {type(module).__name__}.active_params() = {active}, but the slot has "
                             f"{stats.matmul_params} matmul parameters: it must lie in (0, {stats.matmul_params}]")
        stats.active = active
        slots[slot] = stats
    largest = max((sum(_numel(p) for p in m.parameters(recurse=False)) for m in model.modules()), default=0)
    return ModelStats(slots, largest)
