"""The chunked, target-only LM loss equals the plain masked mean over full logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnitrain.model.lm_loss import target_rows_loss
from omnitrain.tokens import IGNORE_INDEX

EPS = torch.finfo(torch.float32).eps  # the losses here are bit-equal: 2 eps relative allowed


def plain(head, hidden, targets):
    logits = head(hidden).float()
    valid = targets != IGNORE_INDEX
    ce = F.cross_entropy(logits.flatten(0, 1), targets.clamp_min(0).flatten(), reduction="none")
    return (ce * valid.flatten()).sum() / valid.sum().clamp_min(1)


def test_chunked_loss_and_gradients_equal_the_full_logits():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300, bias=False)
    hidden = torch.randn(3, 50, 16, requires_grad=True)
    targets = torch.randint(0, 300, (3, 50))
    targets[:, :20] = IGNORE_INDEX  # prompts carry no loss
    ref = plain(head, hidden, targets)
    (g_ref,) = torch.autograd.grad(ref, hidden)
    w_ref = torch.autograd.grad(plain(head, hidden, targets), head.weight)[0]
    got = target_rows_loss(head, hidden, targets, chunk=7)  # chunks that do not divide the rows
    (g_got,) = torch.autograd.grad(got, hidden, retain_graph=True)
    w_got = torch.autograd.grad(target_rows_loss(head, hidden, targets, chunk=7), head.weight)[0]
    assert abs(got.item() - ref.item()) <= 2 * EPS * ref.item()  # measured 0 (bit-equal)
    torch.testing.assert_close(g_got, g_ref, rtol=0, atol=4e-8)  # measured 4.2e-9 (peak 3.4e-3)
    torch.testing.assert_close(w_got, w_ref, rtol=0, atol=3e-7)  # measured 3.0e-8 (peak 4.3e-2)


def test_no_targets_gives_zero_and_keeps_the_head_in_the_graph():
    head = torch.nn.Linear(8, 10)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    loss = target_rows_loss(head, hidden, torch.full((2, 5), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and head.weight.grad is not None


def test_fused_head_equals_the_plain_loss_and_gradients():
    """A plain Linear head is fused with the cross-entropy (gradients made in the forward):
    loss within 1e-5, gradients of the rows and of a tied weight alike."""
    from omnitrain.model.lm_loss import fusable

    torch.manual_seed(0)
    embed = torch.nn.Embedding(300, 16)
    head = torch.nn.Linear(16, 300, bias=False)
    head.weight = embed.weight  # tied, as Qwen2.5-0.5B
    ids = torch.randint(0, 300, (3, 50))
    targets = torch.randint(0, 300, (3, 50))
    targets[:, :20] = IGNORE_INDEX

    def grads(loss_fn):
        embed.zero_grad()
        hidden = torch.tanh(embed(ids))
        loss = loss_fn(hidden)
        loss.backward()
        return loss.detach(), embed.weight.grad.clone()

    assert fusable(head, torch.zeros(1, 16)) and not fusable(torch.nn.Linear(16, 300), torch.zeros(1, 16))
    ref, g_ref = grads(lambda h: plain(head, h, targets))
    index = (targets != IGNORE_INDEX).flatten().nonzero()[:, 0]  # as collate finds it
    for kwargs in ({}, {"index": index}):
        got, g_got = grads(lambda h, kw=kwargs: target_rows_loss(head, h, targets, chunk=7, **kw))
        assert abs(got.item() - ref.item()) <= 2 * EPS * ref.item()  # measured 0 (bit-equal)
        torch.testing.assert_close(g_got, g_ref, rtol=0, atol=3e-7)  # measured 3.7e-8 (peak 4.5e-2)
    # a callable head (not a plain Linear) takes the checkpointed way, same numbers
    chk, g_chk = grads(lambda h: target_rows_loss(lambda x: head(x), h, targets, chunk=7))
    assert abs(chk.item() - ref.item()) <= 2 * EPS * ref.item()  # measured 0 (bit-equal)
    torch.testing.assert_close(g_chk, g_ref, rtol=0, atol=1e-7)  # measured 1.1e-8


def test_fused_head_under_bf16_autocast_stays_close():
    """bf16 autocast: loss within a few fp32 ulps of the plain loss, gradients within 5e-5
    while they peak at 1.2e-3, so zero, doubled or unscaled gradients fail."""
    torch.manual_seed(0)
    head = torch.nn.Linear(32, 500, bias=False)
    hidden = torch.randn(4, 40, 32, requires_grad=True)
    targets = torch.randint(0, 500, (4, 40))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = plain(head, hidden, targets)
        got = target_rows_loss(head, hidden, targets, chunk=64)
    (g_ref,), (g_got,) = torch.autograd.grad(ref, hidden), torch.autograd.grad(got, hidden)
    assert abs(got.item() - ref.item()) < 4e-6  # measured 4.8e-7 (1 fp32 ulp of 6.36)
    assert g_ref.abs().max() > 1e-3  # the scale the tolerance is set against
    torch.testing.assert_close(g_got, g_ref, rtol=0, atol=5e-5)  # measured 9.2e-6 (peak 1.2e-3)


def test_checkpointed_head_supports_autograd_grad():
    """A head with a bias is not fused: its chunks are checkpointed, and torch.autograd.grad
    (not only .backward()) must reach the rows and the head's weight."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300)
    hidden = torch.randn(2, 30, 16, requires_grad=True)
    targets = torch.randint(0, 300, (2, 30))
    targets[:, :10] = IGNORE_INDEX
    g_ref, w_ref = torch.autograd.grad(plain(head, hidden, targets), (hidden, head.weight))
    g_got, w_got = torch.autograd.grad(target_rows_loss(head, hidden, targets, chunk=7), (hidden, head.weight))
    torch.testing.assert_close(g_got, g_ref, rtol=0, atol=0)  # measured 0 (bit-equal)
    torch.testing.assert_close(w_got, w_ref, rtol=0, atol=1e-7)  # measured 1.1e-8 (peak 7.1e-2)


def test_fused_head_with_a_frozen_weight_still_gives_the_rows_gradient():
    """A frozen head (its weight without grad) trained through: the rows get their gradient,
    the weight none."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300, bias=False).requires_grad_(False)
    hidden = torch.randn(2, 30, 16, requires_grad=True)
    targets = torch.randint(0, 300, (2, 30))
    (g_ref,) = torch.autograd.grad(plain(head, hidden, targets), hidden)
    loss = target_rows_loss(head, hidden, targets, chunk=7)
    loss.backward()
    torch.testing.assert_close(hidden.grad, g_ref, rtol=0, atol=6e-8)  # measured 6.5e-9 (peak 4.8e-3)
    assert head.weight.grad is None


def test_fusable_only_for_a_whole_bias_free_linear():
    from omnitrain.model.lm_loss import fusable

    hidden = torch.zeros(1, 16)
    assert fusable(torch.nn.Linear(16, 300, bias=False), hidden) is True
    assert fusable(torch.nn.Linear(16, 300), hidden) is False  # a bias
    assert fusable(torch.nn.Linear(8, 300, bias=False), hidden) is False  # another width
    assert fusable(torch.nn.Linear(16, 0, bias=False), hidden) is False  # no rows here (a shard)
