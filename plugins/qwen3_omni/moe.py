"""Qwen3-Omni's sparse mixture-of-experts MLP: a top-k softmax router and SwiGLU experts
stored as two 3-D weights (``gate_up_proj`` (E, 2I, D), ``down_proj`` (E, D, I): the
layout transformers keeps, so they load and save without reshaping), and the
load-balancing loss of Switch Transformer as transformers' ``load_balancing_loss_func``
computes it.

The experts run either grouped (every routed token sorted by expert, two
``torch._grouped_mm`` calls for all experts) or as a loop over the experts that received
tokens (transformers' reference loop). Both read every expert's weights as one tensor, so
an expert that no token of a rank's batch chose still gets its (zero) gradient: DDP sees
no unused parameter and ZeRO-3 gathers the same tensors on every rank. LoRA reaches both
3-D weights (``lora_weights``): each expert's low-rank update runs beside its matmul, grouped
too where the rank allows (a multiple of 8), else in the loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.nn.blocks import SwiGLU


def grouped_kernel(x: Tensor) -> bool:
    """Whether torch has a grouped matmul for ``x``'s device: the CPU's, or CUDA's on
    sm90 and newer (Hopper); elsewhere the experts loop."""
    return not x.is_cuda or torch.cuda.get_device_capability(x.device) >= (9, 0)


class TopKRouter(nn.Module):
    def __init__(self, dim: int, experts: int, top_k: int, norm_topk_prob: bool) -> None:
        super().__init__()
        self.top_k, self.norm_topk_prob = top_k, norm_topk_prob
        self.weight = nn.Parameter(torch.zeros(experts, dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, D) -> router logits (N, E), the chosen experts' weights (N, k) and ids (N, k)."""
        return self.route(F.linear(x, self.weight))

    def route(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        probs = logits.softmax(-1, dtype=torch.float)
        top, index = probs.topk(self.top_k, dim=-1)
        if self.norm_topk_prob:
            top = top / top.sum(-1, keepdim=True)
        return logits, top.to(logits.dtype), index


class Experts(nn.Module):
    lora_weights = ("gate_up_proj", "down_proj")  # LoRA may target these: one adapter per expert

    def __init__(self, dim: int, hidden: int, experts: int, grouped: bool) -> None:
        super().__init__()
        self.experts, self.grouped = experts, grouped
        self.gate_up_proj = nn.Parameter(torch.empty(experts, 2 * hidden, dim))
        self.down_proj = nn.Parameter(torch.empty(experts, dim, hidden))
        nn.init.normal_(self.gate_up_proj, std=0.02)
        nn.init.normal_(self.down_proj, std=0.02)

    def forward(self, x: Tensor, index: Tensor, weights: Tensor) -> Tensor:
        """(N, D) tokens, their (N, k) experts and routing weights -> (N, D)."""
        grouped = self.grouped and grouped_kernel(x) and all(a.rank % 8 == 0 for a in self._adapters().values())
        return self._grouped(x, index, weights) if grouped else self._loop(x, index, weights)

    def _adapters(self) -> dict[str, nn.Module]:
        """LoRA's per-expert adapters (``omnitrain.nn.grouped_lora``), by weight name."""
        return dict(self.lora.items()) if hasattr(self, "lora") else {}

    def _grouped(self, x: Tensor, index: Tensor, weights: Tensor) -> Tensor:
        k = index.shape[1]
        flat = index.reshape(-1)
        order = flat.argsort(stable=True)
        token = order // k  # the token of each routed copy, copies sorted by expert
        offsets = torch.bincount(flat, minlength=self.experts).cumsum(0).to(torch.int32)
        lora = self._adapters()
        rows = x[token]
        gate_up = torch._grouped_mm(rows, self.gate_up_proj.transpose(1, 2), offs=offsets)
        if "gate_up_proj" in lora:
            gate_up = gate_up + lora["gate_up_proj"].grouped(rows, offsets)
        gate, up = gate_up.chunk(2, dim=-1)
        inner = F.silu(gate) * up
        out = torch._grouped_mm(inner, self.down_proj.transpose(1, 2), offs=offsets)
        if "down_proj" in lora:
            out = out + lora["down_proj"].grouped(inner, offsets)
        out = out * weights.reshape(-1)[order, None]
        return torch.zeros_like(x).index_add(0, token, out.to(x.dtype))

    def _loop(self, x: Tensor, index: Tensor, weights: Tensor) -> Tensor:
        out = torch.zeros_like(x)
        lora = self._adapters()
        hit = torch.bincount(index.reshape(-1), minlength=self.experts).nonzero().flatten().tolist()
        for e in hit:
            token, slot = torch.where(index == e)
            gate_up = F.linear(x[token], self.gate_up_proj[e])
            if "gate_up_proj" in lora:
                gate_up = gate_up + lora["gate_up_proj"].one(x[token], e)
            gate, up = gate_up.chunk(2, dim=-1)
            inner = F.silu(gate) * up
            y = F.linear(inner, self.down_proj[e])
            if "down_proj" in lora:
                y = y + lora["down_proj"].one(inner, e)
            y = y * weights[token, slot, None]
            out = out.index_add(0, token, y.to(x.dtype))
        return out


class SparseMoe(nn.Module):
    """The router (``gate``) and the experts, named as transformers names them."""

    def __init__(self, dim: int, hidden: int, experts: int, top_k: int, norm_topk_prob: bool,
                 grouped: bool) -> None:
        super().__init__()
        self.gate = TopKRouter(dim, experts, top_k, norm_topk_prob)
        self.experts = Experts(dim, hidden, experts, grouped)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, D) -> output (B, L, D) and the router logits (B * L, E)."""
        flat = x.reshape(-1, x.shape[-1])
        logits, weights, index = self.gate(flat)
        return self.experts(flat, index, weights).view_as(x), logits


def balance_loss(router_logits: list[Tensor], top_k: int, keep: Tensor | None = None) -> Tensor:
    """Switch Transformer's load-balancing loss over every MoE layer's logits (N, E):
    E * sum_e (share of routed copies sent to e) * (mean router probability of e), the
    shares and means pooled over the layers and the tokens ``keep`` (N,) marks (padding
    left out), as transformers' ``load_balancing_loss_func``."""
    experts = router_logits[0].shape[-1]
    f32, device = torch.float32, router_logits[0].device  # fp32 whatever the default dtype (bf16-true)
    weight = keep.reshape(-1).to(f32) if keep is not None else torch.ones(router_logits[0].shape[0], dtype=f32,
                                                                          device=device)
    counts = torch.zeros(experts, dtype=f32, device=device)
    probs = torch.zeros(experts, dtype=f32, device=device)
    for logits in router_logits:
        p = logits.float().softmax(-1)
        chosen = p.topk(top_k, dim=-1).indices
        counts = counts.scatter_add(0, chosen.reshape(-1), weight.repeat_interleave(top_k))
        probs = probs + (p * weight[:, None]).sum(0)
    rows = weight.sum() * len(router_logits)
    return experts * torch.sum((counts / rows) * (probs / rows))


class SharedExpertMoe(nn.Module):
    """Qwen3-Omni's Talker MLP: the sparse experts plus a shared SwiGLU expert every
    position runs, scaled by a sigmoid gate (``shared_expert_gate``)."""

    def __init__(self, dim: int, hidden: int, shared_hidden: int, experts: int, top_k: int, norm_topk_prob: bool,
                 grouped: bool) -> None:
        super().__init__()
        self.gate = TopKRouter(dim, experts, top_k, norm_topk_prob)
        self.experts = Experts(dim, hidden, experts, grouped)
        self.shared_expert = SwiGLU(dim, shared_hidden)
        self.shared_expert_gate = nn.Linear(dim, 1, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, D) -> output (B, L, D) and the router logits (B * L, E)."""
        flat = x.reshape(-1, x.shape[-1])
        logits, weights, index = self.gate(flat)
        shared = torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        return (self.experts(flat, index, weights) + shared).view_as(x), logits
