"""A training step that never waits on the GPU: no tensor is read back to the host
(``aten._local_scalar_dense``: ``int(t)``, ``.item()``) and no data-dependent shape is
asked for (``aten.nonzero``) in the forward and backward of the built-in (baseline)
plugins. Documents, target rows and prompt widths come with the batch, found by collate in
the data workers. Counted with a dispatch mode, so it runs on the CPU too."""

from __future__ import annotations

import collections
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides

SYNCS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default}


class SyncCounter(TorchDispatchMode):
    """Counts host round trips, with the line of omnitrain code that asked for each."""

    def __init__(self) -> None:
        super().__init__()
        self.where: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCS:
            ours = [f for f in traceback.extract_stack()
                    if ("omnitrain" in f.filename or "plugins" in f.filename) and "site-packages" not in f.filename]
            self.where[f"{func} at {ours[-1].filename}:{ours[-1].lineno}" if ours else str(func)] += 1
        return func(*args, **(kwargs or {}))


def test_the_counter_sees_a_host_read():
    with SyncCounter() as c:
        int(torch.ones(3).sum())
        torch.arange(4).nonzero()
    assert sum(c.where.values()) == 2


def test_a_training_step_reads_nothing_back(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path / "run"))
    torch.manual_seed(0)
    model = OmniModel(cfg)
    batch = next(iter(make_pipeline(cfg, "train", model.tokenizer.special_id("pad"))))
    assert batch.speech_rows.numel() and batch.audio_lengths.numel(), "the batch must exercise every slot"
    model(batch)["loss"].backward()  # warm-up: dummies, caches
    with SyncCounter() as c:
        losses = model(batch)
        losses["loss"].backward()
    assert set(losses) == {"text", "codec", "flow", "loss"}
    assert not c.where, f"host round trips in the training step: {dict(c.where)}"
