"""Qwen3-Omni's AuT audio encoder (``audio_encoder=qwen3_aut``) against transformers'
``Qwen3OmniMoeAudioEncoder`` with the same random weights, fp32: clips of several chunks
with a short tail, one shorter than a chunk, and one a whole number of chunks, in one batch
(windows of 2 chunks: a clip spans several windows); the token counts are transformers'
``_get_feat_extract_output_lengths``."""

from __future__ import annotations

import pytest
import torch

from omnitrain_plugins.qwen3_omni.aut_audio import (
    AuTAudioConfig,
    AuTAudioEncoder,
    AuTLogMel,
    aut_token_count,
)
from tests.helpers import randomized

pytest.importorskip("transformers")
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as hf  # noqa: E402
from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (  # noqa: E402
    Qwen3OmniMoeAudioEncoderConfig,
)

MELS, WINDOW = 16, 50  # the release's chunks of 100 frames (transformers counts 13 tokens per full chunk)


def pair():
    cfg = Qwen3OmniMoeAudioEncoderConfig(
        num_mel_bins=MELS, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=48, d_model=32,
        output_dim=24, n_window=WINDOW, n_window_infer=4 * WINDOW, downsample_hidden_size=8,
        max_source_positions=64)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    reference = randomized(hf.Qwen3OmniMoeAudioEncoder(cfg), 0.2)
    ours = AuTAudioEncoder(AuTAudioConfig(n_mels=MELS, d_model=32, layers=2, heads=4, ffn_dim=48,
                                          downsample_hidden_size=8, n_window=WINDOW, n_window_infer=4 * WINDOW,
                                          max_source_positions=64), out_dim=24).eval()
    missing, unexpected = ours.load_state_dict(reference.state_dict(), strict=False)
    assert missing == [] and unexpected == []  # transformers' names, one to one
    return ours, reference


@pytest.mark.parametrize("lengths", [[437, 60, 200], [61, 7]])
def test_tokens_equal_transformers(lengths):
    ours, reference = pair()
    lengths_t = torch.tensor(lengths)
    g = torch.Generator().manual_seed(2)
    clips = [torch.randn(MELS, n, generator=g) for n in lengths]
    padded = torch.zeros(len(clips), MELS, max(lengths))
    for i, c in enumerate(clips):
        padded[i, :, : c.shape[1]] = c
    with torch.no_grad():
        want = reference(torch.cat(clips, 1), lengths_t).last_hidden_state
        got = ours(padded, lengths_t)
    counts = hf._get_feat_extract_output_lengths(lengths_t, WINDOW)
    assert got.shape == want.shape == (int(counts.sum()), 24)
    assert aut_token_count(lengths_t, WINDOW).tolist() == counts.tolist()
    assert [AuTLogMel(MELS, WINDOW).num_tokens(n) for n in lengths] == counts.tolist()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_the_release_gives_13_tokens_a_second():
    assert aut_token_count(torch.tensor([100, 1000, 150, 1])).tolist() == [13, 130, 20, 1]
