"""ECAPA over a batch of references of different lengths equals each reference alone: the
batched call (reflect padding at each item's own end, means and pooling over its own
frames) is what lets the DiT encode every reference in one call without a host read."""

from __future__ import annotations

import torch

from omnitrain.nn.ecapa import ECAPA


def ecapa(dtype: torch.dtype) -> ECAPA:
    torch.manual_seed(0)
    return ECAPA(20, 16, [32, 32, 32, 32, 96], [5, 3, 3, 3, 1], [1, 2, 3, 4, 1], 16, 4, 16).to(dtype)


def test_batched_lengths_equal_each_item_alone_with_gradients():
    model, lengths = ecapa(torch.float64), [9, 30, 17, 40]
    mel = torch.randn(4, 40, 20, dtype=torch.float64, requires_grad=True)
    batched = model(mel, torch.tensor(lengths))
    (grad_b,) = torch.autograd.grad(batched.pow(2).sum(), mel)
    alone = torch.cat([model(mel[i:i + 1, :n]) for i, n in enumerate(lengths)])
    (grad_a,) = torch.autograd.grad(alone.pow(2).sum(), mel)
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_b, grad_a, rtol=0, atol=1e-12)
    assert grad_b[0, 9:].abs().sum() == 0, "frames past an item's length must not matter"


def test_full_lengths_equal_the_plain_call_and_padding_is_ignored():
    model = ecapa(torch.float32)
    mel = torch.randn(3, 24, 20)
    full = torch.full((3,), 24)
    torch.testing.assert_close(model(mel, full), model(mel), rtol=1e-5, atol=1e-6)
    noisy = torch.cat([mel, 100 * torch.randn(3, 8, 20)], dim=1)  # junk past every item's end
    torch.testing.assert_close(model(noisy, full), model(mel), rtol=1e-5, atol=1e-6)


def test_bf16_batched_stays_close_to_fp32_alone():
    lengths = [300, 12]  # a count above 256 is not exact in bf16: the means must not round it
    mel = torch.randn(2, 300, 20)
    want = torch.cat([ecapa(torch.float32)(mel[i:i + 1, :n]) for i, n in enumerate(lengths)])
    got = ecapa(torch.bfloat16)(mel.bfloat16(), torch.tensor(lengths)).float()
    assert ((got - want).norm() / want.norm()) < 0.03
