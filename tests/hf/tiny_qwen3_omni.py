"""A tiny random Qwen3-Omni made with transformers (unlike the release in its counts: 4 experts,
top-2, a dense layer before a MoE layer, deepstack after both ViT blocks, 3 code groups of 64,
two voices), saved as a released folder: config.json and sharded safetensors with their index."""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 320
ROPE = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]}
# the Talker's specials and voices: rows of its codec table after the 64 codes (1024 rows of
# specials, as the release's 2048 + 1024: its generate suppresses the last 1024 rows but eos)
CODEC_IDS = dict(codec_pad_id=70, codec_bos_id=71, codec_eos_token_id=72, codec_nothink_id=73, codec_think_bos_id=74,
                 codec_think_eos_id=75, speaker_id={"ethan": 80, "chelsie": 81})
THINKER_TOKEN_KEYS = ("audio_token_id", "image_token_id", "video_token_id", "audio_start_token_id",
                      "vision_start_token_id")
TTS_IDS = dict(tts_bos_token_id=300, tts_eos_token_id=301, tts_pad_token_id=302)  # rows of the Thinker's table


def tiny_config(talker: bool = True, vocab: int = VOCAB, token_ids: dict | None = None):
    """``token_ids``: the prompt tokens' ids (im_start_token_id, user_token_id, ...; the
    thinker's audio_token_id, ...) where a test gives the folder a tokenizer."""
    from transformers import Qwen3OmniMoeConfig

    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2,
                mlp_only_layers=[0], rope_parameters=dict(ROPE), router_aux_loss_coef=0.002)
    ids = dict(token_ids or {})
    thinker_ids = {k: ids.pop(k) for k in list(ids) if k in THINKER_TOKEN_KEYS}
    thinker = dict(text_config=text, position_id_per_seconds=13, **thinker_ids,
                   audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                                     d_model=16, output_dim=32, downsample_hidden_size=8, n_window=50,
                                     n_window_infer=400),
                   vision_config=dict(depth=2, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                                      num_position_embeddings=16, deepstack_visual_indexes=[0, 1]))
    # transformers 5.23 reads spatial_merge_size from the Talker's config (the release's has it)
    speech = dict(
        talker_config=dict(
            text_config=dict(vocab_size=64 + 1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=8, moe_intermediate_size=16,
                             shared_expert_intermediate_size=16, num_experts=4, num_experts_per_tok=2),
            code_predictor_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_code_groups=3),
            num_code_groups=3, thinker_hidden_size=32, accept_hidden_layer=1, spatial_merge_size=2, **CODEC_IDS),
        code2wav_config=dict(codebook_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                             num_key_value_heads=4, intermediate_size=64, num_quantizers=3, decoder_dim=32,
                             upsample_rates=[2, 2, 2, 2], upsampling_ratios=[2, 2]))
    return Qwen3OmniMoeConfig(thinker_config=thinker, enable_audio_output=talker, **{**TTS_IDS, **ids},
                              **(speech if talker else {}))


def tiny_model(talker: bool = True, seed: int = 0, vocab: int = VOCAB, token_ids: dict | None = None):
    """The whole model (``Qwen3OmniMoeForConditionalGeneration``), every weight drawn here:
    norms near 1, the rest N(0, 0.1), the Talker's matrices N(0, 0.3). (transformers 5.23 leaves the Talker's expert weights as
    ``torch.empty`` made them: garbage, now and then NaN.)"""
    from transformers import Qwen3OmniMoeForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(tiny_config(talker, vocab, token_ids)).eval().float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, 0.1)
            if p.dim() == 1 and ("norm" in name or "ln_" in name) and name.endswith("weight"):
                p.add_(1.0)
            if name.startswith("talker.") and "code_predictor" not in name and p.dim() > 1:
                p.mul_(3.0)  # at 0.1 the Talker says one code over and over; at 0.3 its codes vary
    return model


def save_tiny(folder: Path, layout: str = "per_expert", seed: int = 0, dtype: torch.dtype = torch.float32,
              vocab: int = VOCAB, token_ids: dict | None = None):
    """``layout``: per_expert (save_pretrained's default, the release's), fused
    (``save_original_format=False``: transformers' module names, 3-D experts) or thinker
    (the Thinker alone, model_type qwen3_omni_moe_thinker)."""
    model = tiny_model(layout != "thinker", seed, vocab, token_ids).to(dtype)
    target = model.thinker if layout == "thinker" else model
    target.save_pretrained(folder, max_shard_size="60KB", save_original_format=layout != "fused")
    return model


def codes_demo(out: Path) -> Path:
    """The demo's data with replies spoken in the tiny release's code space: 3 groups of at
    most 64 codes (``codec=pitch_groups`` at 31 semitones x 2 levels)."""
    from omnitrain.data.build.demo import make_demo
    from omnitrain_plugins.pitch_groups_codec import PitchGroupsCodec, PitchGroupsConfig
    from tests.helpers import SMALL_DEMO

    make_demo(out, PitchGroupsCodec(PitchGroupsConfig(semitones=31, levels=2, groups=3)), SMALL_DEMO, seed=0)
    return out
