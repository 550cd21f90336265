"""The boolean attention masks the core uses (True = may attend).

``doc_ids`` (B, L) give each token the document it belongs to (0 = padding), which makes
packing and padding one mechanism: attention is causal and never crosses a document
boundary.
"""

from __future__ import annotations

import torch
from torch import Tensor


def doc_causal_mask(doc_ids: Tensor) -> Tensor:
    """(B, L) document ids -> (B, 1, L, L) causal block-diagonal mask.

    Padding tokens attend to themselves only, so no row is fully masked (which would
    give NaN under SDPA); their outputs are never used.
    """
    L = doc_ids.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=doc_ids.device).tril()
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]
    real = (doc_ids != 0)[:, None, :]
    eye = torch.eye(L, dtype=torch.bool, device=doc_ids.device)
    return ((causal & same_doc & real) | eye)[:, None]


def segment_mask(segment_ids: Tensor) -> Tensor:
    """(B, L) segment ids (0 = padding) -> (B, 1, L, L) bidirectional block mask."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    real = (segment_ids != 0)[:, None, :]
    eye = torch.eye(segment_ids.shape[1], dtype=torch.bool, device=segment_ids.device)
    return ((same & real) | eye)[:, None]
