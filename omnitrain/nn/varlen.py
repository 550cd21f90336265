"""Document-aware attention without a dense mask: variable-length (varlen) kernels.

A packed batch holds several documents per row; attention must stay inside each one.
A dense (B, L, L) mask does that anywhere but costs L^2 memory; FlashAttention's
varlen kernel (``torch.nn.attention.varlen.varlen_attn``, CUDA, fp16/bf16) takes the
real tokens flattened plus cumulative document lengths and never builds the mask.
``DocAttention`` decides which path a forward uses; the CPU emulation of the varlen
path runs the same pack/unpack code, so it is tested without a GPU.

Where the documents start depends on the data, and reading it off a GPU tensor stops the
host until the GPU catches up. So ``doc_runs`` computes it on the host, in the data
workers (``collate`` puts it in the batch as ``Batch.doc_runs``); the step only moves it.
Grouped-query attention runs natively: the kernels read each K/V head for its group of
query heads, nothing is repeated.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from omnitrain.nn.masks import doc_causal_mask


@dataclass
class DocRuns:
    """The documents of a (B, L) ``doc_ids`` grid, found on the host."""

    cu_seqlens: Tensor  # (docs + 1,) int32 cumulative document lengths, padding left out
    max_len: int  # the longest document
    token_index: Tensor | None = None  # flat (B*L) positions of real tokens; None: no padding
    shape: tuple[int, int] = (0, 0)  # the (B, L) grid they were found in

    @property
    def one_per_row(self) -> bool:
        """Every row is one document, without padding."""
        return self.token_index is None and self.cu_seqlens.numel() == self.shape[0] + 1

    def to(self, device: torch.device | str) -> DocRuns:
        index = None if self.token_index is None else self.token_index.to(device, non_blocking=True)
        return DocRuns(self.cu_seqlens.to(device, non_blocking=True), self.max_len, index, self.shape)


def doc_runs(doc_ids: Tensor) -> DocRuns:
    """Documents are contiguous runs of one id inside a row (0 = padding, left out).
    Call it on a CPU tensor (the data workers do): it reads values on the host."""
    if doc_ids.device.type != "cpu":
        raise ValueError("doc_runs reads document ids on the host: pass doc_ids on the CPU "
                         "(collate does, in the data workers)")
    B, L = doc_ids.shape
    flat = doc_ids.reshape(-1)
    real = flat != 0
    # a document starts where the id changes, or at the start of a row
    starts = torch.ones_like(real)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::L] = True
    starts &= real
    first = starts.nonzero()[:, 0]
    cum_real = torch.cat([torch.zeros(1, dtype=torch.long), real.long().cumsum(0)])
    cu = torch.cat([cum_real[first], cum_real[-1:]]).to(torch.int32)
    lengths = torch.diff(cu)
    all_real = bool(real.all())
    return DocRuns(cu, int(lengths.max()) if lengths.numel() else 0,
                   None if all_real else real.nonzero()[:, 0], (B, L))


@dataclass
class DocAttention:
    """Either ``mask`` (dense, any device) or varlen ``runs`` (cu_seqlens ...)."""

    mask: Tensor | None = None
    runs: DocRuns | None = None
    causal: bool = False  # one document per row, no padding: plain causal attention
    emulate: bool = False  # run the varlen path with SDPA per document (CPU tests)

    @property
    def cu_seqlens(self) -> Tensor | None:
        return None if self.runs is None else self.runs.cu_seqlens

    @classmethod
    def build(cls, doc_ids: Tensor, backend: str = "auto", runs: DocRuns | None = None) -> DocAttention:
        """``backend``: "dense", "varlen" (emulated off CUDA) or "auto" (varlen on CUDA).
        ``runs``: the documents found in the data workers (``Batch.doc_runs``); without
        them the varlen path finds them here, which syncs a GPU with the host."""
        if backend not in ("auto", "dense", "varlen"):
            raise ValueError(f"attention backend must be auto, dense or varlen, got {backend!r}")
        fast = doc_ids.is_cuda and varlen_available()
        if runs is not None and tuple(runs.shape) != tuple(doc_ids.shape):
            runs = None  # found for another grid (a batch edited after collate)
        if runs is not None and runs.one_per_row:
            return cls(causal=True)  # causal kernels skip the masked half; no mask, no plan
        if not (backend == "varlen" or (backend == "auto" and fast)):
            return cls(mask=doc_causal_mask(doc_ids))
        if runs is None:
            if doc_ids.is_cuda:
                warnings.warn("DocAttention: no doc_runs in the batch, finding documents on the GPU "
                              "syncs the host every step (collate computes Batch.doc_runs)", stacklevel=2)
            runs = doc_runs(doc_ids.cpu())
        return cls(runs=runs.to(doc_ids.device), emulate=not fast)


def varlen_available() -> bool:
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def varlen_attention(q: Tensor, k: Tensor, v: Tensor, plan: DocAttention) -> Tensor:
    """q (B, H, L, D), k, v (B, H_kv, L, D), H a multiple of H_kv -> (B, H, L, D);
    padding rows are 0."""
    B, H, L, D = q.shape
    runs = plan.runs

    def flat(x: Tensor) -> Tensor:  # (B, h, L, D) -> (tokens, h, D)
        x = x.transpose(1, 2).reshape(B * L, x.shape[1], D)
        return x if runs.token_index is None else x.index_select(0, runs.token_index)

    qf, kf, vf = flat(q), flat(k), flat(v)
    if plan.emulate:
        out = _per_document_sdpa(qf, kf, vf, runs.cu_seqlens)
    else:
        from torch.nn.attention.varlen import varlen_attn

        if qf.dtype not in (torch.float16, torch.bfloat16):
            raise ValueError("the varlen (FlashAttention) path needs fp16/bf16; use precision=bf16-mixed "
                             "or thinker.attention=dense")
        cu = runs.cu_seqlens
        # FlashAttention reads grouped K/V heads natively (num_heads_k divides num_heads)
        out = varlen_attn(qf, kf, vf, cu, cu, runs.max_len, runs.max_len, window_size=(-1, 0))
    if runs.token_index is None:
        return out.view(B, L, H, D).transpose(1, 2)
    full = out.new_zeros(B * L, H, D).index_copy(0, runs.token_index, out)
    return full.view(B, L, H, D).transpose(1, 2)


def _per_document_sdpa(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor) -> Tensor:
    outs = []
    bounds = cu_seqlens.tolist()
    gqa = k.shape[1] != q.shape[1]
    for a, b in zip(bounds[:-1], bounds[1:]):
        qi, ki, vi = (x[a:b].transpose(0, 1)[None] for x in (q, k, v))  # (1, h, n, D)
        out = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, enable_gqa=gqa)
        outs.append(out[0].transpose(0, 1))
    return torch.cat(outs)
