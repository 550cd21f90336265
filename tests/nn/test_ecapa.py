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
    torch.testing.assert_close(batched, alone, rtol=0, atol=3e-16)  # measured 3.5e-17 (fp64)
    torch.testing.assert_close(grad_b, grad_a, rtol=0, atol=1e-17)  # measured 1.3e-18 (fp64)
    assert grad_b[0, 9:].abs().sum() == 0, "frames past an item's length must not matter"


def test_full_lengths_equal_the_plain_call_and_padding_is_ignored():
    model = ecapa(torch.float32)
    mel = torch.randn(3, 24, 20)
    full = torch.full((3,), 24)
    torch.testing.assert_close(model(mel, full), model(mel), rtol=0, atol=0)  # measured 0: bit-equal
    noisy = torch.cat([mel, 100 * torch.randn(3, 8, 20)], dim=1)  # junk past every item's end
    torch.testing.assert_close(model(noisy, full), model(mel), rtol=0, atol=0)  # measured 0: bit-equal


def test_bf16_batched_stays_close_to_fp32_alone():
    """End to end in bf16 (the DiT's autocast) with a count past 256; bf16 noise here is
    ~0.4%, above a one-ulp error in a mean: the test below pins the means themselves."""
    lengths = [301, 12]
    torch.manual_seed(1)
    mel = torch.randn(2, 301, 20)
    want = torch.cat([ecapa(torch.float32)(mel[i:i + 1, :n]) for i, n in enumerate(lengths)])
    got = ecapa(torch.bfloat16)(mel.bfloat16(), torch.tensor(lengths)).float()
    assert ((got - want).norm() / want.norm()) < 1e-2  # measured 4.4e-3 (seeds 1-3: 3.4e-3-4.4e-3)


def test_bf16_squeeze_mean_is_the_exact_mean_rounded_once():
    """The squeeze-excite mean over an item's own frames is summed and divided in fp32: the
    sum of these bf16 values is exact in fp32, so the mean is the fp64 mean rounded once to
    bf16, at every channel. Counts 257, 301, 389, 511 are not bf16 numbers (256, 300, 388,
    512 are) and sums near 300-500 keep 2-3 significant digits in bf16: summing or dividing
    in bf16 gets most channels a bf16 ulp off (57% of them, measured)."""
    from omnitrain.nn.ecapa import SqueezeExcite

    torch.manual_seed(0)
    lengths = torch.tensor([257, 301, 389, 511])
    x = (1 + 0.1 * torch.randn(4, 64, 512)).bfloat16()  # many values near 1: sums of 257-511 of them
    se = SqueezeExcite(64, 16).bfloat16()
    seen = []
    se.conv1.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    se(x, lengths)
    frames = torch.arange(512) < lengths[:, None]
    want = (x.double() * frames[:, None]).sum(2, keepdim=True) / lengths[:, None, None].double()
    assert seen[0].dtype == torch.bfloat16
    torch.testing.assert_close(seen[0], want.bfloat16(), rtol=0, atol=0)  # measured: equal at all 256


def test_bf16_pooling_weights_frames_by_the_exact_count():
    """The attentive pooling's first mean weighs an item's frames by 1 / n computed in fp32
    (then bf16): for n = 257, 259 that is within 1.4e-4 of 1 / n, while 1 / n of the count
    rounded in bf16 (256, 260) is 0.4% off. Frames of 1 or 2 make each weighted frame exact
    and the fp32 sum exact: the mean is the fp64 mean rounded once to bf16."""
    from omnitrain.nn.ecapa import AttentiveStatsPool

    torch.manual_seed(0)
    lengths = torch.tensor([257, 259])
    frames = (torch.arange(300) < lengths[:, None])[:, None]
    x = torch.where(frames, torch.randint(1, 3, (2, 64, 300)), 100 * torch.randn(2, 64, 300)).bfloat16()
    pool = AttentiveStatsPool(64, 16).bfloat16()
    seen = []
    pool.tdnn.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    pool(x, lengths)
    mean = seen[0][:, 64:128, 0]  # tdnn's input: the frames, then the mean and std broadcast
    want = (x.double() * frames).sum(2) / lengths[:, None].double()
    torch.testing.assert_close(mean, want.bfloat16(), rtol=0, atol=0)  # measured: equal at all 128


CONFIG = ([32, 32, 32, 32, 96], [5, 3, 3, 3, 1], [1, 2, 3, 4, 1])  # channels, kernels, dilations


def reference(model: ECAPA, mel: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """ECAPA-TDNN written out from the paper's description with the model's weights and the
    configured kernels and dilations: reflect "same" padding, Res2Net groups, squeeze-excite,
    aggregation of the SE-Res2 outputs, attentive statistics pooling with global context."""
    import torch.nn.functional as F

    _, kernels, dilations = CONFIG

    def tdnn(x, block, k, d):
        total = d * (k - 1)
        x = F.pad(x, (total // 2, total - total // 2), mode="reflect") if total else x
        return torch.relu(F.conv1d(x, block.conv.weight, block.conv.bias, dilation=d))

    def stats(x, w):
        mean = (w * x).sum(2)
        return mean, (w * (x - mean[..., None]) ** 2).sum(2).clamp_min(1e-12).sqrt()

    x, outs = tdnn(mel.transpose(1, 2), model.blocks[0], kernels[0], dilations[0]), []
    for i, block in enumerate(model.blocks[1:], 1):
        h = tdnn(x, block.tdnn1, 1, 1)
        parts, ys = h.chunk(scale, 1), [h.chunk(scale, 1)[0]]
        for j in range(1, scale):
            ys.append(tdnn(parts[j] + (ys[-1] if j > 1 else 0), block.res2net_block.blocks[j - 1],
                           kernels[i], dilations[i]))
        h = tdnn(torch.cat(ys, 1), block.tdnn2, 1, 1)
        se = block.se_block
        gate = torch.sigmoid(se.conv2(torch.relu(se.conv1(h.mean(2, keepdim=True)))))
        x = h * gate + x
        outs.append(x)
    x = tdnn(torch.cat(outs, 1), model.mfa, kernels[-1], dilations[-1])
    T = x.shape[-1]
    mean, std = stats(x, torch.full_like(x[:, :1], 1 / T))
    context = torch.cat([x, mean[..., None].expand(-1, -1, T), std[..., None].expand(-1, -1, T)], 1)
    weights = model.asp.conv(torch.tanh(tdnn(context, model.asp.tdnn, 1, 1))).softmax(2)
    pooled = torch.cat(stats(x, weights), 1)[..., None]
    return model.fc(pooled)[..., 0]


def test_forward_equals_the_written_out_ecapa():
    """Pins what the model computes, not only that its batched and single calls agree."""
    model = ecapa(torch.float64)
    mel = torch.randn(3, 23, 20, dtype=torch.float64)
    torch.testing.assert_close(model(mel), reference(model, mel), rtol=0, atol=0)  # measured 0: bit-equal


def test_config_checks_and_the_shortest_reference():
    """Three entries are the smallest valid ECAPA; min_frames is 1 + the largest reflect
    pad, ceil(d (k - 1) / 2): 3 for an even kernel 4 (pads 1 left, 2 right), which runs
    on 3 frames and not on 2; 2 for kernel 3."""
    import pytest

    model = ECAPA(8, 4, [8, 8, 8], [4, 3, 1], [1, 1, 1], 4, 2, 4)
    assert model.min_frames == 3
    assert model(torch.randn(1, 3, 8)).shape == (1, 4)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 2, 8))
    odd = ECAPA(8, 4, [8, 8, 8], [3, 3, 1], [1, 1, 1], 4, 2, 4)  # kernel 3: pads 1 and 1
    assert odd.min_frames == 2 and odd(torch.randn(1, 2, 8)).shape == (1, 4)
    with pytest.raises(ValueError, match="same length"):
        ECAPA(8, 4, [8, 8], [3, 1], [1, 1], 4, 2, 4)
    with pytest.raises(ValueError, match="sum of the middle ones"):
        ECAPA(8, 4, [8, 8, 8, 8], [3, 3, 3, 1], [1, 1, 1, 1], 4, 2, 4)
