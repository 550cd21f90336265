"""flow_dit encodes all references of a batch in one ECAPA call: each item gets what its
own reference alone gives (a short one edge-repeated to the ECAPA's reach), and a dropped
or absent one gets the all-zeros mel's embedding, the unconditional branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnitrain.slots import SpeechCondition
from omnitrain_plugins.qwen_omni.flow_dit import FlowDiT, FlowDiTConfig


def test_one_call_equals_each_reference_alone():
    torch.manual_seed(0)
    dit = FlowDiT(FlowDiTConfig(dim=32, layers=2, look_backward_layers=[0], look_ahead_layers=[1], heads=2, head_dim=16, speaker_dim=8, ref_dim=8,
                                ecapa_channels=[16, 16, 16, 16, 48], ecapa_attention_channels=8,
                                ecapa_res2net_scale=2, ecapa_se_channels=8),
                  codec_vocab_size=64, n_mels=20).double()
    enc, need = dit.ref_encoder, dit.ref_encoder.min_frames
    lengths = [0, need - 2, 25, 40, 33]  # absent, shorter than the reflect padding, three real
    keep = torch.tensor([True, True, True, True, False])  # the last is dropped (guidance)
    reference = torch.randn(5, 40, 20, dtype=torch.float64)
    cond = SpeechCondition(torch.zeros(5, dtype=torch.long), reference, torch.tensor(lengths))
    got = dit.reference_embedding(cond, keep)

    unconditional = enc(torch.zeros(1, need, 20, dtype=torch.float64))[0]
    short = F.pad(reference[1:2, :need - 2].transpose(1, 2), (0, 2), mode="replicate").transpose(1, 2)
    want = torch.stack([unconditional, enc(short)[0], enc(reference[2:3, :25])[0], enc(reference[3:4])[0],
                        unconditional])
    torch.testing.assert_close(got, want, rtol=0, atol=2e-16)  # measured 2.8e-17 (float64)
