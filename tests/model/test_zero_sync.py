"""A training step that never waits on the GPU: no tensor is read back to the host
(``int(t)``, ``.item()``, ``.tolist()``) and no data-dependent shape is asked for
(``nonzero``, a boolean mask index, ``unique``, ``repeat_interleave`` by a tensor) in the
forward and backward of the built-in plugins, baseline and Qwen2.5-Omni alike.

On the CPU every such read is free and invisible, so the step runs with the model and
the batch on PyTorch's ``meta`` device, where tensors have shapes but no data: any read of
device data raises there, as ``torch.cuda.set_sync_debug_mode("error")`` does on a GPU
(the CUDA form of the test, below). What the model legitimately reads on the host (clip
lengths, patch grids, document runs, target rows: ``Batch.HOST_FIELDS`` and the plans
made in the data workers) stays on the CPU, as ``Batch.to`` leaves it."""

from __future__ import annotations

import traceback

import pytest
import torch

from omnitrain.data.batch import HOST_FIELDS
from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.omni_model import OmniModel
from omnitrain.registry import registry
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides

PLUGIN_SETS = {
    "baseline": (),
    "qwen": ("audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "talker=dual_track", "dit=flow_dit",
             "position=tmrope"),
}


def model_and_batch(demo_dir, tmp_path, plugins: str):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path / "run", *PLUGIN_SETS[plugins]))
    torch.manual_seed(0)
    model = OmniModel(cfg)
    batches = iter(make_pipeline(cfg, "train", model.tokenizer.special_id("pad")))
    # the first batch that exercises every slot: audio, images or video, spoken replies
    batch = next(b for b in batches if b.speech_rows.numel() and b.audio_lengths.numel() and b.vision_grids.numel())
    model(batch)["loss"].backward()  # warm-up: dummies, caches
    return model, batch


def step_or_where(model, batch) -> str | None:
    """None if a training step ran; else the line of omnitrain code that read data."""
    try:
        losses = model(batch)
        losses["loss"].backward()
    except (NotImplementedError, RuntimeError) as exc:
        ours = [f for f in traceback.extract_tb(exc.__traceback__)
                if ("omnitrain" in f.filename or "plugins" in f.filename) and "site-packages" not in f.filename]
        where = f"{ours[-1].filename}:{ours[-1].lineno}: {ours[-1].line}" if ours else "?"
        return f"{where}\n  ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    assert set(losses) == {"text", "codec", "flow", "loss"}
    return None


@pytest.mark.parametrize("plugins", list(PLUGIN_SETS))
def test_a_training_step_reads_nothing_back(demo_dir, tmp_path, plugins):
    model, batch = model_and_batch(demo_dir, tmp_path, plugins)
    meta = batch.to("meta")
    assert all(getattr(meta, f).device.type == "cpu" for f in HOST_FIELDS)
    assert meta.input_ids.device.type == "meta" and meta.doc_runs.cu_seqlens.device.type == "meta"
    where = step_or_where(model.to("meta"), meta)
    assert where is None, f"the training step reads device data on the host at {where}"


def test_the_check_sees_a_host_read(demo_dir, tmp_path, monkeypatch):
    """The same check fails when a plugin reads a device tensor back (here: the Qwen DiT
    asks for its references' lengths as Python ints, as it once did)."""
    model, batch = model_and_batch(demo_dir, tmp_path, "qwen")
    FlowDiT = registry("dit").get("flow_dit").cls
    honest = FlowDiT.reference_embedding

    def reads_lengths(self, cond, keep):
        cond.reference_lengths.unique().tolist()
        return honest(self, cond, keep)

    monkeypatch.setattr(FlowDiT, "reference_embedding", reads_lengths)
    where = step_or_where(model.to("meta"), batch.to("meta"))
    assert where is not None and "flow_dit.py" in where


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the meta test above stands in)")
@pytest.mark.parametrize("plugins", list(PLUGIN_SETS))
def test_no_cuda_sync_in_a_training_step(demo_dir, tmp_path, plugins):
    model, batch = model_and_batch(demo_dir, tmp_path, plugins)
    model, batch = model.cuda(), batch.to("cuda")
    model(batch)["loss"].backward()  # warm-up on the device
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(batch)["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
