"""Every model slot is built one way (``omnitrain.model.slot_builder``): with exactly the
keyword arguments its ``SlotSpec.kwargs`` names, by the model and by the HF importer alike."""

from __future__ import annotations

import pytest

from omnitrain.model import slot_builder
from omnitrain.model.meta import meta_model
from omnitrain.model.slot_builder import BUILD_ORDER, SlotArguments, build_slot
from omnitrain.registry import build
from omnitrain.slots import MODEL_SLOTS, slot_spec


def test_the_model_builds_each_slot_with_the_arguments_its_spec_names(smoke_cfg, monkeypatch):
    seen: dict[str, tuple[str, ...]] = {}

    def recording(slot, node, **kwargs):
        seen[slot] = tuple(kwargs)
        return build(slot, node, **kwargs)

    monkeypatch.setattr(slot_builder, "build", recording)
    model = meta_model(smoke_cfg)
    assert set(BUILD_ORDER) == set(MODEL_SLOTS)
    assert seen == {slot: slot_spec(slot).kwargs for slot in BUILD_ORDER}
    assert model.audio_encoder.proj.out_features == model.thinker.hidden_size  # out_dim: the Thinker's width


def test_a_slot_that_needs_the_thinker_width_before_the_thinker_says_so(smoke_cfg):
    args = SlotArguments.of(smoke_cfg, 300, 64, build("position", smoke_cfg.position))
    with pytest.raises(ValueError, match="building the talker: 'thinker_hidden_size' is not known yet"):
        build_slot("talker", smoke_cfg, args)
