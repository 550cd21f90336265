"""Shared fixtures: a small real demo dataset on disk, and config composition helpers.

Everything is real: tar shards with encoded wav/flac/png/jpg/mp4 members, composed
Hydra configs from configs/ and recipes/.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# shard counts and sample lengths are cached per user: the tests keep theirs to themselves
os.environ["OMNITRAIN_CACHE"] = tempfile.mkdtemp(prefix="omnitrain-test-cache-")
# DeepSpeed's JIT-built ops (CPU Adam, shared-memory comm), kept between runs, one folder per
# environment: their build.ninja names the venv's include paths, so two venvs sharing a folder
# (a fresh CI clone, then the developer's checkout) rebuild each other's ops, ~35 s each time
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(
    Path.home() / ".cache" / "omnitrain" / "torch_extensions"
    / f"py{sys.version_info.major}{sys.version_info.minor}-{hashlib.sha1(sys.prefix.encode()).hexdigest()[:10]}"))

from omnitrain.data.build.demo import make_demo  # noqa: E402
from omnitrain.registry import build  # noqa: E402
from omnitrain.run_config import compose_config  # noqa: E402
from tests.helpers import SMALL_DEMO, smoke_overrides  # noqa: E402


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    cfg = compose_config(["recipe=smoke"])
    make_demo(out, build("codec", cfg.codec), SMALL_DEMO, seed=0)
    return out


@pytest.fixture(scope="session")
def groups_demo_dir(tmp_path_factory) -> Path:
    """The demo's data with the codes of a codec of 3 code groups per frame
    (``tests/contracts/stranger_plugins.py``): spoken replies' codes are (n, 3)."""
    out = tmp_path_factory.mktemp("groups_demo")
    from omnitrain.plugin_loading import load_plugins
    from omnitrain.registry import registry

    load_plugins(["tests.contracts.stranger_plugins"])
    pitch = compose_config(["recipe=smoke"]).codec.config  # the smoke codec's settings, 3 groups per frame
    make_demo(out, registry("codec").get("stranger_groups").cls(pitch), SMALL_DEMO, seed=0)
    return out


@pytest.fixture(scope="session")
def pitch_groups_demo_dirs(tmp_path_factory):
    """``groups -> folder``: the demo's data with ``codec=pitch_groups`` codes of that many
    groups a frame (made once a session each)."""
    made: dict[int, Path] = {}

    def folder(groups: int) -> Path:
        if groups not in made:
            made[groups] = tmp_path_factory.mktemp(f"pitch_groups{groups}_demo")
            codec = build("codec", {"name": "pitch_groups", "groups": groups})
            make_demo(made[groups], codec, SMALL_DEMO, seed=0)
        return made[groups]

    return folder


@pytest.fixture(scope="session")
def pitch_groups_demo_dir(pitch_groups_demo_dirs) -> Path:
    """The demo's data with 3 code groups a frame (what ``recipe=qwen3_omni_smoke`` trains on)."""
    return pitch_groups_demo_dirs(compose_config(["recipe=qwen3_omni_smoke"]).codec.groups)


@pytest.fixture(scope="session")
def smoke_trained(demo_dir, tmp_path_factory):
    """The smoke recipe's 10 steps by a real Trainer.fit in this process (checkpoints at
    steps 5 and 10), so the trained module stays in hand: (cfg, module, run_dir)."""
    import torch

    from omnitrain.data.datamodule import OmniDataModule
    from omnitrain.training.stages.module import OmniModule
    from omnitrain.training.trainer_factory import build_trainer

    run = tmp_path_factory.mktemp("run")
    cfg = compose_config(smoke_overrides(demo_dir, run))
    torch.manual_seed(0)
    module = OmniModule(cfg)
    build_trainer(cfg).fit(module, datamodule=OmniDataModule(cfg))
    return cfg, module, run


@pytest.fixture
def smoke_cfg(demo_dir, tmp_path):
    return compose_config(smoke_overrides(demo_dir, tmp_path / "run"))


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Benchmarks run in-process set torch's thread count; a later in-process run would
    then sum in another order than its subprocess twin (a 1e-7 loss difference)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Training in-process sets MASTER_ADDR/MASTER_PORT/... (Lightning, DeepSpeed): each
    test leaves os.environ as it found it, so later subprocesses start clean."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def spoken_demo_dir(tmp_path_factory) -> Path:
    """A small spoken demo (real espeak-ng words in the 4 reply voices; pitch codes as
    placeholders until a trained codec re-encodes them): 48 train, 8 val, 4 held-out."""
    pytest.importorskip("espeakng_loader", reason="the spoken demo needs espeakng-loader (the dev extra)")
    from omnitrain.data.build.demo_spoken import SpokenSizes, make_spoken_demo

    out = tmp_path_factory.mktemp("spoken_demo")
    make_spoken_demo(out, build("codec", compose_config([]).codec), SpokenSizes(48, 8, 4, 20), seed=0)
    return out
