"""The spoken demo's Thinker must tell an image's left digit from its right one. With
Qwen2.5-Omni's block layout of M-RoPE channels (T, then H, then W) width rotates with the
slowest frequencies: at the demo Thinker's head_dim and theta 1e6, one column apart is
1.8e-4 rad, and `make demo-speech` answered half its held-out image prompts with the two
digits swapped (7 of 14; text, audio and video 34 of 34). Interleaved channels (Qwen3-Omni)
give width 0.18 rad a column and every image came out in order (docs/BENCHMARKS.md)."""

from __future__ import annotations

import torch

from omnitrain.config.compose import compose_run
from omnitrain.registry import build
from tests.helpers import untrained_codec_folder


def column_step(tmp_path, overrides: list[str]) -> float:
    """The largest angle (rad) between the rotations of two image tokens one column apart,
    over the recipe's Thinker's frequency channels (a fresh clone has no trained codec: an
    untrained one stands in, the positions do not read it)."""
    codec = untrained_codec_folder(tmp_path / "codec")
    cfg = compose_run(["recipe=demo_speech", f"codec.path={codec}", *overrides])
    position = build("position", cfg.position)
    head_dim = cfg.thinker.hidden_size // cfg.thinker.heads
    ids = torch.tensor([[5, 5], [3, 3], [7, 8]]).view(3, 1, 2)  # (t, h, w): next column
    cos, sin = position.rotary(ids, head_dim)
    angle = torch.atan2(sin, cos)[0, :, : head_dim // 2]
    return float((angle[1] - angle[0]).abs().max())


def test_the_spoken_demo_tells_an_images_columns_apart(tmp_path):
    assert column_step(tmp_path, []) > 0.1


def test_the_block_layout_would_not(tmp_path):
    """The failure above, kept measurable: the same Thinker with Qwen2.5-Omni's blocks."""
    assert column_step(tmp_path, ["position.mrope_interleaved=false"]) < 1e-3
