"""A tiny random Qwen2.5-Omni made with transformers and saved as a released folder is:
config.json, sharded safetensors with their index, spk_dict.pt (two voices)."""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 320
# Qwen's special ids, moved into the tiny vocabulary
IDS = dict(audio_token_index=300, image_token_index=301, video_token_index=302, audio_start_token_id=303,
           audio_end_token_id=304, vision_start_token_id=305, vision_end_token_id=306)
ROPE = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
SPEAKER_BOS = {"Chelsie": 310, "Ethan": 311}


def tiny_config(talker: bool = True, vocab: int = VOCAB):
    from transformers import Qwen2_5OmniConfig

    thinker = dict(
        audio_config=dict(d_model=32, encoder_attention_heads=2, encoder_ffn_dim=64, encoder_layers=1,
                          num_mel_bins=128, output_dim=32, n_window=100, max_source_positions=1500),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[1], window_size=112, spatial_merge_size=2,
                           patch_size=14, temporal_patch_size=2, in_channels=3),
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, rope_parameters=dict(ROPE),
                         rms_norm_eps=1e-6, tie_word_embeddings=False),
        position_id_per_seconds=25, seconds_per_chunk=2, **IDS,
    )
    talker_cfg = dict(
        vocab_size=80, embedding_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, rope_parameters=dict(ROPE),
        position_id_per_seconds=25, seconds_per_chunk=2, spatial_merge_size=2,
        tts_text_start_token_id=307, tts_text_end_token_id=308, tts_text_pad_token_id=309,
        tts_codec_pad_token_id=70, tts_codec_start_token_id=71, tts_codec_end_token_id=72,
        tts_codec_mask_token_id=74, **IDS,
    )
    token2wav = dict(
        dit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, head_dim=16, ff_mult=2,
                        emb_dim=16, block_size=8, look_ahead_layers=[1], look_backward_layers=[0], repeats=2,
                        num_embeds=65, mel_dim=80, dropout=0.0, enc_emb_dim=8, enc_dim=8,
                        enc_channels=[16, 16, 16, 16, 48], enc_kernel_sizes=[5, 3, 3, 3, 1],
                        enc_dilations=[1, 2, 3, 4, 1], enc_attention_channels=8, enc_res2net_scale=2,
                        enc_se_channels=8),
        bigvgan_config=dict(mel_dim=80, upsample_initial_channel=64),
    )
    return Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker_cfg, token2wav_config=token2wav,
                             enable_audio_output=talker)


def tiny_model(talker: bool = True, seed: int = 0, vocab: int = VOCAB):
    """The model with every weight perturbed (so nothing is trivially zero or one)."""
    from transformers import Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5OmniForConditionalGeneration(tiny_config(talker, vocab)).eval().float()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def save_tiny(folder: Path, talker: bool = True, seed: int = 0, shard_size: str = "40KB", vocab: int = VOCAB):
    """``save_pretrained`` into ``folder`` (several shards) plus ``spk_dict.pt``."""
    model = tiny_model(talker, seed, vocab)
    model.save_pretrained(folder, max_shard_size=shard_size)
    if talker:
        g = torch.Generator().manual_seed(seed + 1)
        torch.save({name: {"cond": torch.randn(8, generator=g), "ref_mel": torch.randn(30, 80, generator=g),
                           "bos_token": bos} for name, bos in SPEAKER_BOS.items()}, folder / "spk_dict.pt")
    return model
