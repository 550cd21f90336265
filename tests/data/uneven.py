"""Shards shaped like users' data: uneven sizes, one smaller than the loader workers."""

from __future__ import annotations

from pathlib import Path

from benchmarks.probe_epochs import repack

SIZES = (3, 29, 1, 17, 11)  # 61 samples: a shard of 1 (< 2 workers), none a multiple of a batch


def write_uneven(demo_dir: Path, out: Path, sizes=SIZES, measure=None) -> list[Path]:
    """The demo's training samples (reused in turn, with new keys) in shards of ``sizes``."""
    return repack(sorted(demo_dir.glob("train-*.tar")), out, sizes, measure)
