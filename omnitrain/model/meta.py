"""The model built on the "meta" device: every shape, no memory, in about a second.

Memory planning, FLOP counting, export and resume checks need the names and shapes of
a model's tensors, not their values; a 7B-shaped model built this way allocates
nothing.
"""

from __future__ import annotations

import torch

from omnitrain.config.typed import RunConfig
from omnitrain.model.omni_model import OmniModel
from omnitrain.plugin_loading import load_plugins


def meta_model(cfg: RunConfig) -> OmniModel:
    load_plugins(list(cfg.plugins))
    with torch.device("meta"):
        return OmniModel(cfg)


def unique_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State-dict tensors, each once: a tied weight appears under its first name only
    (safetensors stores shared tensors once; loading restores the tie)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        out[name] = tensor
    return out
