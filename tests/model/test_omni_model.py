"""The assembled model: three losses, every slot in the graph, clear count errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.omni_model import OmniModel
from omnitrain.slots import MODEL_SLOTS


@pytest.fixture
def batch_and_model(smoke_cfg):
    torch.manual_seed(0)
    batch = next(iter(make_pipeline(smoke_cfg, "train", 256)))
    return batch, OmniModel(smoke_cfg)


def test_three_finite_losses(batch_and_model):
    batch, model = batch_and_model
    losses = model(batch)
    assert set(losses) == {"text", "codec", "flow", "loss"}
    assert all(torch.isfinite(v) for v in losses.values())
    # untrained: about ln(vocab) = ln(267) = 5.587; measured 5.616 (gap 0.029)
    assert abs(losses["text"].item() - math.log(model.tokenizer.vocab_size)) < 0.25


def _text_only(batch):
    """Keep only the text tokens of each row (no media, no speech)."""
    return dataclasses.replace(
        batch,
        audio_features=torch.zeros(0, 1, 1), audio_lengths=torch.zeros(0, dtype=torch.long),
        vision_patches=torch.zeros(0, 1), vision_grids=torch.zeros(0, 3, dtype=torch.long),
        input_ids=torch.where(batch.input_ids >= 256, 256 + 2, batch.input_ids),  # specials -> <|user|>
        speech_rows=torch.zeros(0, dtype=torch.long), reply_positions=torch.zeros(0, 1, dtype=torch.long),
        reply_mask=torch.zeros(0, 1, dtype=torch.bool), codec_tokens=torch.zeros(0, 1, dtype=torch.long),
        codec_mask=torch.zeros(0, 1, dtype=torch.bool), speech_mel=torch.zeros(0, 1, 1),
    )


def test_every_trainable_slot_gets_a_gradient_even_without_its_modality(batch_and_model):
    """DDP/ZeRO-3 need the same graph on every rank: absent modalities still run."""
    batch, model = batch_and_model
    model(_text_only(batch))["loss"].backward()
    for slot in MODEL_SLOTS:
        params = [p for p in getattr(model, slot).parameters() if p.requires_grad]
        assert all(p.grad is not None for p in params), f"{slot} left the graph"


def test_placeholder_count_mismatch_is_explained(batch_and_model):
    batch, model = batch_and_model
    if batch.audio_features.shape[0] == 0:
        pytest.skip("batch has no audio")
    bad = dataclasses.replace(batch, audio_features=batch.audio_features[:, :, :-40],
                              audio_lengths=batch.audio_lengths - 40)
    with pytest.raises(ValueError, match="audio placeholder tokens"):
        model(bad)


def test_loss_weights_and_detach(smoke_cfg, batch_and_model):
    batch, _ = batch_and_model
    no_speech = smoke_cfg.replace(loss=dataclasses.replace(smoke_cfg.loss, codec=0.0, flow=0.0))
    losses = OmniModel(no_speech)(batch)
    assert set(losses) == {"text", "loss"} and torch.equal(losses["loss"], losses["text"])
