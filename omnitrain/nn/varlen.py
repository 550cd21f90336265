"""Document-aware attention without a dense mask: variable-length (varlen) kernels.

A packed batch holds several documents per row; attention must stay inside each one.
A dense (B, L, L) mask does that anywhere but costs L^2 memory; FlashAttention's
varlen kernel (``torch.nn.attention.varlen.varlen_attn``, CUDA, fp16/bf16) takes the
real tokens flattened plus cumulative document lengths and never builds the mask.
``DocAttention`` decides which path a forward uses; the CPU emulation of the varlen
path runs the same pack/unpack code, so it is tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from omnitrain.nn.masks import doc_causal_mask


@dataclass
class DocAttention:
    """Either ``mask`` (dense, any device) or varlen indices (``cu_seqlens`` ...)."""

    mask: Tensor | None = None
    token_index: Tensor | None = None  # flat (B*L) positions of real tokens, document-major
    cu_seqlens: Tensor | None = None  # (docs + 1,) int32 cumulative document lengths
    max_len: int = 0
    emulate: bool = False  # run the varlen path with SDPA per document (CPU tests)

    @classmethod
    def build(cls, doc_ids: Tensor, backend: str = "auto") -> DocAttention:
        """``backend``: "dense", "varlen" (emulated off CUDA) or "auto" (varlen on CUDA)."""
        if backend not in ("auto", "dense", "varlen"):
            raise ValueError(f"attention backend must be auto, dense or varlen, got {backend!r}")
        use_varlen = backend == "varlen" or (backend == "auto" and doc_ids.is_cuda and varlen_available())
        if not use_varlen:
            return cls(mask=doc_causal_mask(doc_ids))
        flat = doc_ids.reshape(-1)
        row = torch.arange(doc_ids.shape[0], device=doc_ids.device).repeat_interleave(doc_ids.shape[1])
        real = (flat != 0).nonzero()[:, 0]
        # documents are contiguous runs inside a row: a new one starts where (row, doc) changes
        key = row[real] * (int(flat.max()) + 1) + flat[real]
        starts = torch.ones_like(key, dtype=torch.bool)
        starts[1:] = key[1:] != key[:-1]
        lengths = torch.diff(torch.cat([starts.nonzero()[:, 0], torch.tensor([key.numel()], device=key.device)]))
        cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=doc_ids.device)
        cu[1:] = lengths.cumsum(0)
        return cls(token_index=real, cu_seqlens=cu, max_len=int(lengths.max()),
                   emulate=not (doc_ids.is_cuda and varlen_available()))


def varlen_available() -> bool:
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def varlen_attention(q: Tensor, k: Tensor, v: Tensor, plan: DocAttention) -> Tensor:
    """q, k, v (B, H, L, D) with equal head counts -> (B, H, L, D); padding rows are 0."""
    B, H, L, D = q.shape

    def flat(x: Tensor) -> Tensor:  # (B, H, L, D) -> (tokens, H, D)
        return x.transpose(1, 2).reshape(B * L, H, D)[plan.token_index]

    qf, kf, vf = flat(q), flat(k), flat(v)
    if plan.emulate:
        out = _per_document_sdpa(qf, kf, vf, plan.cu_seqlens)
    else:
        from torch.nn.attention.varlen import varlen_attn

        if qf.dtype not in (torch.float16, torch.bfloat16):
            raise ValueError("the varlen (FlashAttention) path needs fp16/bf16; use precision=bf16-mixed "
                             "or thinker.attention=dense")
        cu = plan.cu_seqlens
        out = varlen_attn(qf, kf, vf, cu, cu, plan.max_len, plan.max_len, window_size=(-1, 0))
    full = torch.zeros(B * L, H, D, dtype=out.dtype, device=out.device)
    full[plan.token_index] = out
    return full.view(B, L, H, D).transpose(1, 2)


def _per_document_sdpa(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor) -> Tensor:
    outs = []
    bounds = cu_seqlens.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        qi, ki, vi = (x[a:b].transpose(0, 1)[None] for x in (q, k, v))  # (1, H, n, D)
        outs.append(F.scaled_dot_product_attention(qi, ki, vi, is_causal=True)[0].transpose(0, 1))
    return torch.cat(outs)
