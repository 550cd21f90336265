"""Every rank runs every encoder, the Talker and the DiT each step, frozen or not, even
when its batch lacks that input: sharded engines (ZeRO-3, FSDP) gather a module's
weights collectively, so a rank that skipped one would leave the others waiting."""

from __future__ import annotations

import pytest

from omnitrain.registry import build
from omnitrain.run_config import compose_config
from omnitrain.training.stages.module import OmniModule
from tests.helpers import modality_batches, smoke_overrides


@pytest.fixture(scope="module")
def batches(demo_dir, tmp_path_factory):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path_factory.mktemp("run")))
    return modality_batches(cfg, build("tokenizer", cfg.tokenizer).special_id("pad"))


def test_text_only_batch_runs_every_slot_even_frozen_ones(demo_dir, tmp_path, batches):
    # (trainable slots getting gradients without their modality: tests/model/test_omni_model.py)
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "optim.freeze=[audio_encoder,vision_encoder]"))
    module = OmniModule(cfg)
    module.configure_model()
    model = module.model
    text_only, media = batches
    assert text_only.audio_features.shape[0] == 0 and text_only.vision_patches.shape[0] == 0
    calls: list[str] = []
    for slot in ("audio_encoder", "vision_encoder", "thinker", "talker", "dit"):
        getattr(model, slot).register_forward_hook(lambda *_, s=slot: calls.append(s))
    for batch in (text_only, media):
        calls.clear()
        model(batch)["loss"].backward()
        assert sorted(set(calls)) == ["audio_encoder", "dit", "talker", "thinker", "vision_encoder"]
