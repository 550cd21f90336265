"""Rotary position embedding helpers shared by every positional scheme."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def rotate_half(x: Tensor) -> Tensor:
    """The (-x2, x1) half rotation used by the Qwen/LLaMA rotary convention."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """q, k: (B, H, L, Dh); cos, sin: (B, L, Dh)."""
    cos = cos.unsqueeze(1).to(q.dtype)
    sin = sin.unsqueeze(1).to(q.dtype)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def inverse_frequencies(head_dim: int, theta: float, device: torch.device | None = None) -> Tensor:
    """(head_dim // 2,) rotary frequencies theta^(-2i/d)."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    return 1.0 / (theta**exponent)


def rotary_1d(positions: Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Plain 1-D rotary cos/sin (1, L, head_dim) for positions (L,), in ``dtype``."""
    angles = positions[:, None].float() * inverse_frequencies(head_dim, theta, positions.device)[None]
    angles = torch.cat([angles, angles], -1)[None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of a scalar per row: (N,) -> (N, dim), [cos | sin] halves."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half
    )
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def multimodal_rotary(
    position_ids: Tensor, head_dim: int, theta: float, section: list[int], interleaved: bool = False
) -> tuple[Tensor, Tensor]:
    """M-RoPE cos/sin: each frequency channel rotates with one position row.

    position_ids (rows, B, L); ``section`` gives each row its number of the head_dim/2
    frequencies (Qwen2.5-Omni 7B: [16, 24, 24]). Blocks (Qwen2.5-Omni, transformers'
    ``apply_multimodal_rotary_pos_emb``): block i of ``section[i]`` channels rotates with
    row i % rows. ``interleaved`` (Qwen3-Omni, Qwen3-VL: [24, 20, 20]): channel j rotates
    with row r where j % 3 == r and j < 3 * section[r] for r = 1, 2, else with row 0 (T, H, W,
    T, H, W, ...). Both halves of the rotary use the same split.
    """
    rows = position_ids.shape[0]
    inv = inverse_frequencies(head_dim, theta, position_ids.device)
    row_of = (interleaved_rows(section, head_dim // 2) if interleaved else torch.cat(
        [torch.full((s,), i % rows, dtype=torch.long) for i, s in enumerate(section)])).to(position_ids.device)
    pos = position_ids.permute(1, 2, 0).float()  # (B, L, rows)
    angles = pos[..., row_of] * inv  # (B, L, head_dim/2)
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def interleaved_rows(section: list[int], half: int) -> Tensor:
    """The row of each of ``half`` frequency channels in the interleaved layout."""
    j = torch.arange(half)
    row = torch.zeros(half, dtype=torch.long)
    for r in (1, 2):
        row[(j % 3 == r) & (j < 3 * section[r])] = r
    return row


def default_section(head_dim: int, rows: int = 3) -> list[int]:
    """Split head_dim/2 frequencies 2:3:3 like Qwen2.5-Omni ([16, 24, 24] for 128)."""
    half = head_dim // 2
    if rows == 1:
        return [half]
    first = half // 4
    rest = half - first
    return [first, rest // 2, rest - rest // 2]
