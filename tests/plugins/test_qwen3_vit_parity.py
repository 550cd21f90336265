"""Qwen3-Omni's ViT (``vision_encoder=qwen3_vit``) against transformers'
``Qwen3OmniMoeVisionEncoder`` with the same random weights, fp32: an image, a 2-frame-group
video and a one-row image in one call (grids unlike the learned table's side: the
bilinear resampling), merged tokens and the deepstack levels of two blocks."""

from __future__ import annotations

import pytest
import torch

from omnitrain_plugins.qwen3_omni.vit import Qwen3ViT, Qwen3ViTConfig
from tests.helpers import randomized

pytest.importorskip("transformers")
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as hf  # noqa: E402
from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (  # noqa: E402
    Qwen3OmniMoeVisionEncoderConfig,
)

PATCH = 4


def pair():
    cfg = Qwen3OmniMoeVisionEncoderConfig(
        depth=3, hidden_size=32, intermediate_size=48, num_heads=4, patch_size=PATCH, temporal_patch_size=2,
        spatial_merge_size=2, out_hidden_size=24, num_position_embeddings=36, deepstack_visual_indexes=[0, 2])
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    reference = randomized(hf.Qwen3OmniMoeVisionEncoder(cfg), 0.2)
    ours = Qwen3ViT(Qwen3ViTConfig(hidden_size=32, depth=3, heads=4, intermediate_size=48, num_position_embeddings=36,
                                   deepstack_visual_indexes=[0, 2], patch_size=PATCH), out_dim=24).eval()
    missing, unexpected = ours.load_state_dict(reference.state_dict(), strict=False)
    assert missing == [] and unexpected == []  # transformers' names, one to one
    return ours, reference


def test_tokens_and_deepstack_levels_equal_transformers():
    ours, reference = pair()
    grids = torch.tensor([[1, 4, 6], [2, 2, 4], [1, 2, 10]])
    patches = torch.randn(int(grids.prod(-1).sum()), 3 * 2 * PATCH * PATCH, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference(patches, grid_thw=grids)
        got = ours(patches, grids)
    assert got.tokens.shape == want.pooler_output.shape == (int(grids.prod(-1).sum()) // 4, 24)
    torch.testing.assert_close(got.tokens, want.pooler_output, rtol=0, atol=1e-5)
    assert len(got.levels) == len(want.deepstack_features) == 2
    for mine, theirs in zip(got.levels, want.deepstack_features, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)


def test_a_deepstack_index_past_the_blocks_is_refused():
    with pytest.raises(ValueError, match="deepstack_visual_indexes"):
        Qwen3ViT(Qwen3ViTConfig(depth=2, deepstack_visual_indexes=[2]), out_dim=8)


def test_the_moe_thinker_adds_the_deepstack_levels_after_its_first_layers(demo_dir):
    """Through the core: a batch with images and video gives the Thinker one side input per
    deepstack level at exactly the vision tokens, and dropping them changes its states."""
    from omnitrain.model.omni_model import OmniModel
    from omnitrain.run_config import compose_config
    from tests.helpers import modality_batches, smoke_overrides

    cfg = compose_config(smoke_overrides(demo_dir, demo_dir / "unused", "thinker=qwen3_moe", "vision_encoder=qwen3_vit",
                                         "vision_encoder.deepstack_visual_indexes=[0,1]"))
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    _, media = modality_batches(cfg, model.tokenizer.special_id("pad"))
    with torch.no_grad():
        inputs = model.embed_inputs(media)
        side = inputs.side
        assert side is not None and len(side.features) == 2
        vision = model.media_mask(media.input_ids) & (media.input_ids != model.audio_id)
        assert torch.equal(side.mask, vision) and side.features[0].shape[0] == int(vision.sum()) > 0
        with_side = model.thinker(inputs.embeds, media.position_ids, media.doc_ids, side_inputs=side).hidden
        without = model.thinker(inputs.embeds, media.position_ids, media.doc_ids).hidden
    assert not torch.allclose(with_side, without)
