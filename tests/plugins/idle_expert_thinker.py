"""``thinker=qwen3_moe_idle_expert``: Qwen3-Omni's MoE Thinker whose routers never choose
expert 0 on rank 1 (its router logit there is -1e9), so one rank holds an expert that no token
reaches while the other trains it: what a real batch does now and then. Loaded with
``plugins=[tests/plugins/idle_expert_thinker.py]`` by the strategy tests."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from omnitrain.api import register
from omnitrain_plugins.qwen3_omni.moe import TopKRouter
from omnitrain_plugins.qwen3_omni.moe_thinker import Qwen3MoeThinker, Qwen3MoeThinkerConfig

IDLE_EXPERT, IDLE_RANK = 0, 1


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class IdleOnOneRankRouter(TopKRouter):
    def forward(self, x):
        logits = F.linear(x, self.weight)
        if _rank() == IDLE_RANK:
            logits = logits.index_fill(1, torch.tensor([IDLE_EXPERT], device=logits.device), -1e9)
        return self.route(logits)


@register("thinker", "qwen3_moe_idle_expert", config=Qwen3MoeThinkerConfig)
class IdleExpertThinker(Qwen3MoeThinker):
    def __init__(self, cfg: Qwen3MoeThinkerConfig, vocab_size: int, position) -> None:
        super().__init__(cfg, vocab_size, position)
        for layer in self.layers:
            if layer.sparse:
                layer.mlp.gate.__class__ = IdleOnOneRankRouter
