"""RMSNorm as in Qwen2 / LLaMA (computed in fp32, scaled by a learned weight).

``F.rms_norm`` computes the same thing (equal to the written-out formula, tested) and
lets torch pick its fused kernel where it has one (CUDA), instead of five elementwise
kernels and their saved activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)
