"""``vocoder=code2wav`` against transformers' ``Qwen3OmniMoeCode2Wav`` with the same random
weights (fp32, 3 code groups, 2 sliding-window layers, both upsampling stages), and its
streaming: with the context the decoder reads on each side, chunks join to the whole decode."""

from __future__ import annotations

import pytest
import torch

from omnitrain.inference.chunked_codes import ChunkedCodes
from omnitrain_plugins.qwen3_omni.code2wav import Code2Wav, Code2WavConfig
from tests.helpers import randomized

pytest.importorskip("transformers")
from transformers.models.qwen3_omni_moe import configuration_qwen3_omni_moe as hfc  # noqa: E402
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as hf  # noqa: E402

CFG = Code2WavConfig(hidden_size=32, layers=2, heads=4, intermediate_size=64, sliding_window=5,
                     upsampling_ratios=[2, 2], upsample_rates=[2, 3, 2], decoder_dim=32)
GROUPS, CODEBOOK = 3, 64


@pytest.fixture(scope="module")
def pair():
    config = hfc.Qwen3OmniMoeCode2WavConfig(
        codebook_size=CODEBOOK, hidden_size=CFG.hidden_size, num_hidden_layers=CFG.layers,
        num_attention_heads=CFG.heads, num_key_value_heads=CFG.heads, intermediate_size=CFG.intermediate_size,
        sliding_window=CFG.sliding_window, num_quantizers=GROUPS, upsample_rates=list(CFG.upsample_rates),
        upsampling_ratios=list(CFG.upsampling_ratios), decoder_dim=CFG.decoder_dim)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    ref = randomized(hf.Qwen3OmniMoeCode2Wav(config), 0.1)
    ours = Code2Wav(CFG, codec_vocab_size=CODEBOOK, code_groups=GROUPS).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert missing == [] and unexpected == []  # the same names, module by module
    return ours, ref


def test_decode_equals_transformers(pair):
    ours, ref = pair
    torch.manual_seed(1)
    codes = torch.randint(0, CODEBOOK, (2, 17, GROUPS))
    with torch.no_grad():
        want = ref(codes.transpose(1, 2))[:, 0]  # transformers takes (B, groups, frames)
        got = ours.decode(codes, torch.ones(2, 17, dtype=torch.bool))
    assert got.shape == (2, 17 * Code2Wav.samples_per_code(CFG))
    assert 0 < got.shape[1] - want.shape[1] < Code2Wav.samples_per_code(CFG)  # the blocks' cut tail
    assert want.std() > 0.05 and (want.abs() < 1).float().mean() > 0.9  # a waveform, not saturated
    torch.testing.assert_close(got[:, : want.shape[1]], want, rtol=0, atol=1e-5)  # measured 7.5e-8
    assert got[:, want.shape[1]:].abs().max() == 0
    # a padded row: its real frames' samples are those of the row alone (causal), the rest zero
    mask = torch.arange(17)[None] < torch.tensor([[17], [9]])
    with torch.no_grad():
        padded = ours.decode(codes, mask)
        alone = ours.decode(codes[1:, :9], mask[1:, :9])
    n = 9 * Code2Wav.samples_per_code(CFG)
    torch.testing.assert_close(padded[1, : n - 2 * Code2Wav.samples_per_code(CFG)],
                               alone[0, : n - 2 * Code2Wav.samples_per_code(CFG)], rtol=0, atol=1e-6)
    assert padded[1, n:].abs().max() == 0


def test_context_bounds_hold_and_streaming_equals_whole(pair):
    """Changing frame j changes samples of frames j - 1 (the transposed convolutions' look-
    ahead) up to j + receptive_field_codes, never beyond; streamed with that context, in
    chunks of 1, 3 and 4 frames, the pieces join to the whole decode."""
    ours, _ = pair
    per = Code2Wav.samples_per_code(CFG)
    torch.manual_seed(2)
    codes = torch.randint(0, CODEBOOK, (1, 40, GROUPS))
    mask = torch.ones(1, 40, dtype=torch.bool)
    with torch.no_grad():
        whole = ours.decode(codes, mask)[0]
        j = 20
        changed = codes.clone()
        changed[0, j] = (changed[0, j] + 7) % CODEBOOK
        diff = (ours.decode(changed, mask)[0] - whole).abs().view(40, per).amax(1)
    hit = (diff > 0).nonzero().flatten().tolist()
    back, ahead = hit[-1] - j, j - hit[0]
    assert ahead == 1 and ahead <= ours.right_context_codes  # measured: the frame before reads it
    assert 0 < back <= ours.receptive_field_codes()  # measured 19 frames back, the bound 29
    ours.left_context_codes = ours.receptive_field_codes()
    cond = None
    for chunk in (1, 3, 4):
        stream = ChunkedCodes(ours, cond, chunk)
        pieces = [stream.push(frame) for frame in codes[0]] + [stream.finish()]
        torch.testing.assert_close(torch.cat(pieces), whole, rtol=0, atol=1e-6)
