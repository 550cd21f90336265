"""Multimodal position-id arithmetic shared by positional schemes.

Pure functions of a segment's shape: no token scanning, no Python loop over tokens.
They work on int64 numpy arrays because a sample's ids are a few dozen small array ops,
where numpy's per-op cost is a fraction of torch's; schemes convert once, at the end.
"""

from __future__ import annotations

import numpy as np


def same_on_rows(ids: np.ndarray, rows: int = 3) -> np.ndarray:
    """(n,) -> (rows, n): text-like ids, equal on every row."""
    return np.broadcast_to(ids, (rows, ids.shape[0]))


def vision_ids(start: int, grid: tuple[int, int, int], t_values: np.ndarray) -> np.ndarray:
    """(3, t*h*w) ids of a vision body in raster (t, y, x) order: (start + t_value, start + y, start + x)."""
    t, h, w = grid
    out = np.empty((3, t, h, w), dtype=np.int64)
    out[0] = t_values.reshape(t, 1, 1)
    out[1] = np.arange(h).reshape(1, h, 1)
    out[2] = np.arange(w)
    out += start
    return out.reshape(3, -1)


def video_t_values(grid_t: int, second_per_grid: float, per_second: int) -> np.ndarray:
    """Temporal id of each frame group: t * seconds_per_grid * ids_per_second, computed
    in float32 and truncated, exactly as transformers' Qwen2.5-Omni does."""
    spg = np.float32(second_per_grid)
    return (np.arange(grid_t, dtype=np.float32) * spg * np.float32(per_second)).astype(np.int64)


def chunk_index(values: np.ndarray, chunk: int) -> np.ndarray:
    """Chunk of each non-decreasing temporal value, advancing at most one chunk per token.

    transformers' ``get_chunked_index`` moves to the next chunk when a value reaches the
    next boundary, once per token, so a jump of several chunks still advances by one.
    That is the recurrence c_i = min(floor(v_i / chunk), c_{i-1} + 1), c_0 = 0, whose
    closed form is c_i = i + min_{j <= i}(floor(v_j / chunk) - j).
    """
    if values.size == 0:
        return values
    steps = np.arange(values.size)
    return steps + np.minimum(np.minimum.accumulate(values // chunk - steps), 0)
