"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from omnitrain.data.demo import DemoSizes

SMALL_DEMO = DemoSizes(train=48, val=12, heldout=4, per_shard=16)


def smoke_overrides(demo_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "recipe=smoke",
        f"data.train_shards={demo_dir}/train-*.tar",
        f"data.val_shards={demo_dir}/val-*.tar",
        f"run_dir={run_dir}",
        "logger=csv",
        *extra,
    ]


def speech_overrides(demo_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """The tiny dual-track Talker + flow_dit run (recipes/speech_smoke.yaml)."""
    return ["recipe=speech_smoke", *smoke_overrides(demo_dir, run_dir, *extra)[1:]]
