"""Multimodal position-id arithmetic shared by positional schemes.

Pure tensor functions of a segment's shape: no token scanning, no Python loop over
tokens. Schemes (plugins) combine them into their own rules.
"""

from __future__ import annotations

import torch
from torch import Tensor


def same_on_rows(ids: Tensor, rows: int = 3) -> Tensor:
    """(n,) -> (rows, n): text-like ids, equal on every row."""
    return ids[None].expand(rows, -1)


def vision_ids(start: int, grid: tuple[int, int, int], t_values: Tensor) -> Tensor:
    """(3, t*h*w) ids of a vision body in raster (t, y, x) order: (start + t_value, start + y, start + x)."""
    t, h, w = grid
    tt = t_values.view(t, 1, 1).expand(t, h, w).reshape(-1)
    yy = torch.arange(h).view(1, h, 1).expand(t, h, w).reshape(-1)
    xx = torch.arange(w).view(1, 1, w).expand(t, h, w).reshape(-1)
    return torch.stack([tt, yy, xx]) + start


def video_t_values(grid_t: int, second_per_grid: float, per_second: int) -> Tensor:
    """Temporal id of each frame group: t * seconds_per_grid * ids_per_second, computed
    in float32 and truncated, exactly as transformers' Qwen2.5-Omni does."""
    spg = torch.tensor(second_per_grid, dtype=torch.float32)
    return (torch.arange(grid_t) * spg * per_second).long()


def chunk_index(values: Tensor, chunk: int) -> Tensor:
    """Chunk of each non-decreasing temporal value, advancing at most one chunk per token.

    transformers' ``get_chunked_index`` moves to the next chunk when a value reaches the
    next boundary, once per token, so a jump of several chunks still advances by one.
    That is the recurrence c_i = min(floor(v_i / chunk), c_{i-1} + 1), c_0 = 0, whose
    closed form is c_i = i + min_{j <= i}(floor(v_j / chunk) - j).
    """
    if values.numel() == 0:
        return values
    steps = torch.arange(values.numel(), device=values.device)
    return steps + torch.cummin(values // chunk - steps, dim=0).values.clamp_max(0)
