"""RMSNorm through ``F.rms_norm`` is the Qwen2 formula written out, in fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from omnitrain.nn.norms import RMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_equals_the_written_out_formula(dtype):
    torch.manual_seed(0)
    norm = RMSNorm(64)
    torch.nn.init.normal_(norm.weight)
    x = (3 * torch.randn(5, 7, 64)).to(dtype).requires_grad_()
    y = x.float()
    want = norm.weight * (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + norm.eps)).to(dtype)
    got = norm(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    g_want = torch.autograd.grad(want.float().square().sum(), x)[0]
    g_got = torch.autograd.grad(got.float().square().sum(), x)[0]
    torch.testing.assert_close(g_got, g_want, rtol=0, atol=0)  # measured 0: bit-equal (fp32, bf16)
