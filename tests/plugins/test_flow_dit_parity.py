"""flow_dit == transformers' Qwen2.5-Omni token2wav DiT (fp32, to 1e-6) through the weight
mapping: one forward (conditional and unconditional branch) and the whole RK4 sampler
with guidance and sway sampling."""

from __future__ import annotations

import pytest
import torch

from omnitrain.model.flow_matching import sample_mel
from omnitrain.slots import SpeechCondition
from omnitrain_plugins.qwen_omni.flow_dit import FlowDiT, FlowDiTConfig
from omnitrain_plugins.qwen_omni.weights import dit_from_transformers

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, head_dim=16, ff_mult=2, emb_dim=16,
            block_size=4, look_ahead_layers=[1], look_backward_layers=[0, 2], repeats=2, num_embeds=64,
            mel_dim=20, dropout=0.0, enc_emb_dim=8, enc_dim=8, enc_channels=[16, 16, 16, 16, 48],
            enc_kernel_sizes=[5, 3, 3, 3, 1], enc_dilations=[1, 2, 3, 4, 1], enc_attention_channels=8,
            enc_res2net_scale=2, enc_se_channels=8)


@pytest.fixture(scope="module")
def pair():
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniDiTConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniToken2WavDiTModel

    torch.manual_seed(0)
    cfg = Qwen2_5OmniDiTConfig(**TINY)
    cfg._attn_implementation = "sdpa"
    hf = Qwen2_5OmniToken2WavDiTModel(cfg).eval().float()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = FlowDiT(FlowDiTConfig(
        dim=32, layers=4, heads=2, head_dim=16, ff_mult=2, code_dim=16, mel_frames_per_code=2, block_size=4,
        look_backward_layers=[0, 2], look_ahead_layers=[1], speaker_dim=8, ref_dim=8,
        ecapa_channels=[16, 16, 16, 16, 48], ecapa_kernel_sizes=[5, 3, 3, 3, 1],
        ecapa_dilations=[1, 2, 3, 4, 1], ecapa_attention_channels=8, ecapa_res2net_scale=2,
        ecapa_se_channels=8, dropout=0.0), codec_vocab_size=64, n_mels=20, num_speakers=2).eval()
    spk = [torch.randn(8), torch.randn(8)]
    ours.load_state_dict(dit_from_transformers(hf.state_dict(), spk), strict=True)
    return hf, ours, spk


def test_forward_matches_both_guidance_branches(pair):
    hf, ours, spk = pair
    torch.manual_seed(1)
    code = torch.randint(0, 64, (1, 11))  # 22 frames: 5 full blocks of 4 and a partial one
    T = 22
    x, ref = torch.randn(1, T, 20), torch.randn(1, 30, 20)
    t = torch.tensor(0.3)
    with torch.no_grad():
        want = hf(hidden_states=x, condition_vector=ref, speaker_embedding=spk[1][None, None].expand(1, T, 8),
                  quantized_code=code, time_step=t, apply_cfg=True)
        cond = SpeechCondition(torch.tensor([1, 1]), ref.expand(2, -1, -1), torch.tensor([30, 30]))
        got = ours(x.expand(2, -1, -1), t.repeat(2), code.expand(2, -1), torch.ones(2, 11, dtype=torch.bool),
                   torch.tensor([False, True]), cond)
    assert (got - want).abs().max().item() < 1e-6  # measured 1.5e-7
    assert (got[0] - got[1]).abs().max().item() > 1e-2  # the condition matters


def test_sampler_matches_rk4_with_guidance_and_sway(pair):
    hf, ours, spk = pair
    torch.manual_seed(2)
    code, ref = torch.randint(0, 64, (1, 9)), torch.randn(1, 25, 20)
    torch.manual_seed(123)
    with torch.no_grad():
        want = hf.sample(spk[0][None], ref, code, num_steps=4, guidance_scale=0.5, sway_coefficient=-1.0)
    torch.manual_seed(123)
    noise = torch.randn(1, 18, 20)
    cond = SpeechCondition(torch.tensor([0]), ref, torch.tensor([25]))
    got = sample_mel(ours, code, torch.ones_like(code, dtype=torch.bool), 20, steps=3, method="rk4_38",
                     guidance=0.5, cond=cond, sway=-1.0, noise=noise)
    assert (got.transpose(1, 2) - want).abs().max().item() < 7e-6  # measured 7.2e-7


def test_padding_and_windows_do_not_change_valid_frames(pair):
    """A padded batch item and a block-aligned window give the full sequence's outputs."""
    _, ours, _ = pair
    torch.manual_seed(3)
    code, x, ref = torch.randint(0, 64, (1, 10)), torch.randn(1, 20, 20), torch.randn(1, 12, 20)
    cond = SpeechCondition(torch.tensor([0]), ref, torch.tensor([12]))
    t, keep = torch.tensor([0.6]), torch.tensor([False])
    with torch.no_grad():
        full = ours(x, t, code, torch.ones_like(code, dtype=torch.bool), keep, cond)
        padded = ours(torch.cat([x, torch.randn(1, 6, 20)], 1), t, torch.cat([code, code[:, :3]], 1),
                      torch.tensor([[True] * 10 + [False] * 3]), keep,
                      SpeechCondition(cond.speaker, torch.cat([ref, torch.randn(1, 5, 20)], 1), cond.reference_lengths))
        # frames 8..11 (block 2) need blocks 0..3 (2 back, 1 ahead): frames 0..15
        window = ours(x[:, :16], t, code[:, :8], torch.ones(1, 8, dtype=torch.bool), keep, cond, offset=0)
        # frames 12..15 (block 3) need blocks 1..4: a window from frame 4, with its offset
        shifted = ours(x[:, 4:20], t, code[:, 2:10], torch.ones(1, 8, dtype=torch.bool), keep, cond, offset=4)
        no_ahead = ours(x[:, :12], t, code[:, :6], torch.ones(1, 6, dtype=torch.bool), keep, cond)
    assert (padded[:, :20] - full).abs().max().item() < 1e-6  # measured 1.2e-7
    assert torch.equal(window[:, 8:12], full[:, 8:12])  # measured 0: bit-identical
    assert (shifted[:, 8:12] - full[:, 12:16]).abs().max().item() < 2e-7  # measured 3.0e-8
    # a window without the block ahead changes the block (the receptive field is real)
    assert (no_ahead[:, 8:12] - full[:, 8:12]).abs().max().item() > 1e-3
