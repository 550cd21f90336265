"""The whole Qwen3-Omni Thinker side through the core (``thinker=qwen3_moe``,
``audio_encoder=qwen3_aut``, ``vision_encoder=qwen3_vit``, ``position=qwen3_tmrope``)
against transformers' ``Qwen3OmniMoeThinkerForConditionalGeneration`` with the same random
weights, fp32, on demo samples built by omnitrain's own data path (real encoded audio,
images and video with its audio track): logits and the router's load-balancing loss.
transformers computes its own position ids (``get_rope_index``), places the encoders'
outputs itself and adds the deepstack levels itself. Attention is sharpened (q/k norm weights 4, a
small rotary base) so that the replies depend on where each key sits: with plain random weights
a decode whose ids continued from the token count instead of the layout gave the same greedy
replies. The weights reach omnitrain as a user's would: transformers' ``save_pretrained`` (a
Thinker-only folder, experts stored one by one), then ``omnitrain import-hf``, whose bundle
is the model under test (its config made from the folder's config.json)."""

from __future__ import annotations

import pytest
import torch

from omnitrain.bundle import load_bundle
from omnitrain.data.collate import collate
from omnitrain.data.examples import ExampleBuilder
from omnitrain.data.shards import resolve_shards
from omnitrain.data.tar_samples import read_shard
from omnitrain.hf.importer import import_hf
from omnitrain.model.omni_model import OmniModel
from omnitrain.positions.layout import ImageSeg, VideoSeg
from omnitrain.run_config import compose_config
from tests.helpers import randomized, smoke_overrides

pytest.importorskip("transformers")
from transformers.models.qwen3_omni_moe import configuration_qwen3_omni_moe as hfc  # noqa: E402
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as hf  # noqa: E402

pytestmark = pytest.mark.slow
# a small rotary base: every frequency channel turns within the few dozen ids of a sample, so a
# position off by a few changes the replies (at the release's 1e6 only the first channels would)
QWEN3 = ("thinker=qwen3_moe", "audio_encoder=qwen3_aut", "vision_encoder=qwen3_vit", "position=qwen3_tmrope",
         "position.theta=50", "vision_encoder.deepstack_visual_indexes=[0,1]")


def reference(cfg, model: OmniModel):
    t, a, v = cfg.thinker, cfg.audio_encoder, cfg.vision_encoder
    special = model.tokenizer.special_ids()
    config = hfc.Qwen3OmniMoeThinkerConfig(
        audio_config={"num_mel_bins": a.n_mels, "encoder_layers": a.layers, "encoder_attention_heads": a.heads,
                      "encoder_ffn_dim": a.ffn_dim, "d_model": a.d_model, "output_dim": t.hidden_size,
                      "n_window": a.n_window, "n_window_infer": a.n_window_infer,
                      "downsample_hidden_size": a.downsample_hidden_size},
        vision_config={"depth": v.depth, "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                       "num_heads": v.heads, "patch_size": v.patch_size, "temporal_patch_size": v.temporal_patch_size,
                       "spatial_merge_size": v.merge_size, "out_hidden_size": t.hidden_size,
                       "num_position_embeddings": v.num_position_embeddings,
                       "deepstack_visual_indexes": list(v.deepstack_visual_indexes)},
        text_config={"vocab_size": model.thinker.embed_tokens.num_embeddings, "hidden_size": t.hidden_size,
                     "intermediate_size": t.ffn_dim, "num_hidden_layers": t.layers, "num_attention_heads": t.heads,
                     "num_key_value_heads": t.kv_heads, "head_dim": model.thinker.head_dim,
                     "moe_intermediate_size": t.moe_ffn_dim, "num_experts": t.experts, "num_experts_per_tok": t.top_k,
                     "norm_topk_prob": t.norm_topk_prob, "mlp_only_layers": list(t.mlp_only_layers),
                     "rope_parameters": {"rope_type": "default", "rope_theta": cfg.position.theta,
                                         "mrope_section": model.position.section(model.thinker.head_dim)}},
        audio_token_id=special["audio"], image_token_id=special["image"], video_token_id=special["video"],
        vision_start_token_id=special["vision_bos"], audio_start_token_id=special["audio_bos"],
        position_id_per_seconds=cfg.position.position_id_per_seconds,
    )
    config._attn_implementation = "eager"
    for sub in (config.audio_config, config.vision_config, config.text_config):
        sub._attn_implementation = "eager"
    torch.manual_seed(0)
    thinker = randomized(hf.Qwen3OmniMoeThinkerForConditionalGeneration(config), 0.15)
    with torch.no_grad():  # peaked attention (q/k norms scale the logits): where the keys sit matters
        for layer in thinker.model.language_model.layers:
            layer.self_attn.q_norm.weight.fill_(4.0)
            layer.self_attn.k_norm.weight.fill_(4.0)
    return thinker


def samples(cfg, want: int = 3):
    """Demo samples with audio, images and a video with its own audio track, built by the
    data pipeline's example builder (our features, tokens and position ids)."""
    build = ExampleBuilder(cfg)
    found = {}
    for url in resolve_shards(cfg.data.train_shards, "data.train_shards"):
        for _, sample in read_shard(url):
            ex = build(sample)
            if ex is None:
                continue
            kinds = {type(s).__name__ + ("+audio" if isinstance(s, VideoSeg) and s.audio_tokens else "")
                     for s in ex.layout}
            for kind in ("AudioSeg", "ImageSeg", "VideoSeg+audio"):
                if kind in kinds and kind not in found:
                    found[kind] = ex
            if len(found) == want:
                return list(found.values())
    return list(found.values())


def hf_inputs(ex, batch) -> dict:
    images = [i for i, s in enumerate([s for s in ex.layout if isinstance(s, ImageSeg | VideoSeg)])
              if isinstance(s, ImageSeg)]
    items = [s for s in ex.layout if isinstance(s, ImageSeg | VideoSeg)]
    counts = batch.vision_grids.prod(-1).tolist()
    starts = [sum(counts[:i]) for i in range(len(counts))]
    pieces = [batch.vision_patches[s:s + n] for s, n in zip(starts, counts, strict=True)]
    videos = [i for i in range(len(items)) if i not in images]
    out: dict = {"input_ids": batch.input_ids, "attention_mask": torch.ones_like(batch.input_ids)}
    if batch.audio_lengths.numel():
        frames = batch.audio_features.shape[-1]
        out["input_features"] = batch.audio_features
        out["feature_attention_mask"] = (torch.arange(frames)[None] < batch.audio_lengths[:, None]).long()
    if images:
        out["pixel_values"] = torch.cat([pieces[i] for i in images])
        out["image_grid_thw"] = batch.vision_grids[images]
    if videos:
        out["pixel_values_videos"] = torch.cat([pieces[i] for i in videos])
        out["video_grid_thw"] = batch.vision_grids[videos]
        out["video_second_per_grid"] = torch.tensor([items[i].second_per_grid for i in videos])
        out["use_audio_in_video"] = any(items[i].audio_tokens for i in videos)
    return out


@pytest.fixture(scope="module")
def pair(demo_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3")
    cfg = compose_config(smoke_overrides(demo_dir, root, *QWEN3))
    torch.manual_seed(0)
    ref = reference(cfg, OmniModel(cfg)).eval()  # OmniModel: the vocabulary and special ids of the run's tokenizer
    ref.save_pretrained(root / "hf")
    import_hf(root / "hf", root / "bundle")
    model, imported = load_bundle(root / "bundle")
    assert len(list(imported.vision_encoder.deepstack_visual_indexes)) == 2 and imported.thinker.mlp_only_layers
    return cfg, model.eval(), ref


def test_logits_and_router_loss_equal_transformers(pair):
    cfg, model, ref = pair
    found = samples(cfg)
    assert len(found) == 3, "the demo should hold audio, image and video-with-audio samples"
    for ex in found:
        batch = collate([ex], model.tokenizer.special_id("pad"))
        with torch.no_grad():
            out, _ = model.thinker_forward(batch)
            got = model.thinker.logits(out.hidden)
            want = ref(**hf_inputs(ex, batch), output_router_logits=True)
        assert want.logits.std() > 0.1  # logits that tell a wrong input apart (measured 0.15-0.17)
        torch.testing.assert_close(got, want.logits, rtol=0, atol=1e-5, msg=ex.key)  # measured <= 1.9e-7
        torch.testing.assert_close(out.aux_losses["router"], want.aux_loss, rtol=1e-5, atol=1e-7, msg=ex.key)


def test_greedy_replies_equal_transformers_generate(pair):
    """The replier's greedy decode (prefill, then one cached step a token, position ids
    continuing from the prompt's) against transformers' ``generate`` on validation prompts
    (the demo's conversations cut before their reply) with audio, an image and video."""
    import dataclasses

    from omnitrain.data.sample_builder import SampleBuilder
    from omnitrain.inference.replier import Replier
    from omnitrain.training.validation.tracking_samples import validation_prompts

    cfg, model, ref = pair
    settings = dataclasses.replace(cfg.generate, max_new_tokens=8, temperature=0.0)
    replier = Replier(model, settings, SampleBuilder.from_config(cfg))
    replier.eos = -1  # random weights: compare all 8 tokens, whatever they are
    prompts = validation_prompts(cfg, 6)
    kinds = {type(s).__name__ for p in prompts for s in p.example.layout}
    assert {"AudioSeg", "ImageSeg", "VideoSeg"} <= kinds
    for prompt in prompts:
        ours = replier.reply_texts([prompt.example])[0].new
        batch = collate([prompt.example], model.tokenizer.special_id("pad"))
        with torch.no_grad():
            out = ref.generate(**hf_inputs(prompt.example, batch), max_new_tokens=8, do_sample=False,
                               eos_token_id=None, pad_token_id=0)
        assert ours == out[0, batch.input_ids.shape[1]:].tolist(), prompt.key
