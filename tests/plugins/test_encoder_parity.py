"""whisper_audio and qwen_vit reproduce transformers' Qwen2.5-Omni encoders (fp32)
when loaded with a tiny random transformers model's weights through the mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnitrain.features.whisper_mel import WhisperLogMel
from omnitrain_plugins.qwen_omni.qwen_vit import QwenViT, QwenViTConfig, hf_vision_state_dict
from omnitrain_plugins.qwen_omni.whisper_audio import (
    WhisperAudioConfig,
    WhisperAudioEncoder,
    hf_audio_state_dict,
)

transformers = pytest.importorskip("transformers")


def perturbed(model, scale: float = 0.05):
    """transformers initialises weights small (std 0.02): attention is then near uniform and
    rotary positions hardly matter. Perturbed weights make every part count."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def test_audio_encoder_matches_transformers():
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig,
    )
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    torch.manual_seed(0)
    hf_cfg = Qwen2_5OmniAudioEncoderConfig(d_model=32, encoder_attention_heads=4, encoder_ffn_dim=64,
                                           encoder_layers=2, num_mel_bins=16, n_window=4, output_dim=24)
    ref = perturbed(Qwen2_5OmniAudioEncoder(hf_cfg))
    ours = WhisperAudioEncoder(
        WhisperAudioConfig(n_mels=16, d_model=32, layers=2, heads=4, ffn_dim=64, n_window=4), out_dim=24
    ).eval()
    ours.load_state_dict(hf_audio_state_dict(ref.state_dict()), strict=True)
    lengths = [19, 8, 3, 40]
    feats = [torch.randn(16, n) for n in lengths]
    with torch.no_grad():
        want = ref(torch.cat(feats, dim=1), feature_lens=torch.tensor(lengths)).last_hidden_state
        padded = torch.stack([torch.nn.functional.pad(f, (0, 40 - f.shape[1])) for f in feats])
        got = ours(padded, torch.tensor(lengths))
    assert got.shape == want.shape
    assert (got - want).abs().max() < 4e-7  # measured 4.5e-8


def test_features_match_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
                                 chunk_length=30, padding_value=0.0)
    rng = np.random.default_rng(0)
    for n in (16000, 12345, 161):
        wave = (0.1 * rng.standard_normal(n)).astype(np.float32)
        out = fe(wave, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
        frames = int(out["attention_mask"].sum())
        ours = WhisperLogMel(128)(torch.from_numpy(wave))
        assert ours.shape == (128, frames)
        assert (ours - out["input_features"][0, :, :frames]).abs().max() < 1e-4  # measured 1.5e-5


def test_vision_encoder_matches_transformers():
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniVisionEncoderConfig,
    )
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniVisionEncoder

    torch.manual_seed(0)
    hf_cfg = Qwen2_5OmniVisionEncoderConfig(depth=3, hidden_size=32, intermediate_size=48, num_heads=4,
                                            window_size=56, out_hidden_size=24, fullatt_block_indexes=[1])
    hf_cfg._attn_implementation = "eager"
    ref = perturbed(Qwen2_5OmniVisionEncoder(hf_cfg), 0.2)  # at 0.05 even rope_theta=1e9 moves it 3e-5
    ours = QwenViT(QwenViTConfig(hidden_size=32, depth=3, heads=4, intermediate_size=48, window_size=56,
                                 fullatt_block_indexes=[1]), out_dim=24).eval()
    ours.load_state_dict(hf_vision_state_dict(ref.state_dict()), strict=True)
    grids = torch.tensor([[1, 6, 10], [2, 4, 4], [1, 2, 2]])  # an image, a video, a small image
    patches = torch.randn(int(grids.prod(-1).sum()), 3 * 2 * 14 * 14)
    with torch.no_grad():
        want = ref(patches, grid_thw=grids).pooler_output
        got = ours(patches, grids)
    assert got.shape == want.shape == (60 // 4 + 32 // 4 + 1, 24)
    assert (got - want).abs().max() < 1e-4  # measured 1.2e-5 (outputs up to 14)
