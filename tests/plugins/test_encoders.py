"""Encoders produce exactly the token counts their processors promise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnitrain.features.vision import smart_resize
from omnitrain_plugins.mel_conv_audio import (
    MelConvAudioConfig,
    MelConvAudioEncoder,
    audio_token_count,
)
from omnitrain_plugins.patch_vit import PatchViT, PatchViTConfig


def test_audio_token_count_formula_and_features():
    fe = MelConvAudioEncoder.feature_extractor(MelConvAudioConfig())
    feats = fe(torch.zeros(16000))
    assert feats.shape == (128, 100)  # 10 ms hop, Whisper drops the last frame
    assert fe.num_tokens(100) == 25  # one token per 40 ms
    assert [audio_token_count(n) for n in (1, 2, 3, 4, 5, 8)] == [0, 0, 1, 1, 1, 2]


def test_audio_encoder_batches_like_single_items():
    enc = MelConvAudioEncoder(MelConvAudioConfig(dim=32, layers=1, heads=2, ffn_dim=64), out_dim=16).eval()
    a, b = torch.randn(128, 100), torch.randn(128, 57)
    batched = enc(torch.nn.utils.rnn.pad_sequence([a.T, b.T], batch_first=True).transpose(1, 2),
                  torch.tensor([100, 57]))
    singles = torch.cat([enc(a[None], torch.tensor([100])), enc(b[None], torch.tensor([57]))])
    assert batched.shape == (25 + audio_token_count(57), 16)
    assert (batched - singles).abs().max().item() < 7e-6  # measured 7.2e-7 (max of 30 seeds)


@pytest.mark.parametrize("hw", [(56, 56), (60, 90), (300, 200)])
def test_vision_tokens_match_the_grid(hw):
    cfg = PatchViTConfig(dim=32, layers=1, heads=2, ffn_dim=64, max_pixels=224 * 224)
    proc = PatchViT.processor(cfg)
    patches, grid = proc.image(np.zeros((*hw, 3), np.uint8))
    assert grid[0] == 1 and grid[1] % 2 == 0 and grid[2] % 2 == 0
    h, w = smart_resize(*hw, 28, cfg.min_pixels, cfg.max_pixels)
    assert (grid[1] * 14, grid[2] * 14) == (h, w)
    enc = PatchViT(cfg, out_dim=16)
    out = enc(patches, torch.tensor([grid]))
    assert out.shape == (grid[1] * grid[2] // 4, 16)


def test_video_frames_pad_to_temporal_patch():
    proc = PatchViT.processor(PatchViTConfig())
    patches, grid = proc.video(np.zeros((5, 56, 56, 3), np.uint8))
    assert grid == (3, 4, 4) and patches.shape == (48, 3 * 2 * 14 * 14)
