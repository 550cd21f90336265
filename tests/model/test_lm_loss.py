"""The chunked, target-only LM loss equals the plain masked mean over full logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnitrain.model.lm_loss import target_rows_loss
from omnitrain.tokens import IGNORE_INDEX


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
    assert abs(got.item() - ref.item()) < 1e-5
    assert torch.allclose(g_got, g_ref, atol=1e-6) and torch.allclose(w_got, w_ref, atol=1e-6)


def test_no_targets_gives_zero_and_keeps_the_head_in_the_graph():
    head = torch.nn.Linear(8, 10)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    loss = target_rows_loss(head, hidden, torch.full((2, 5), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and head.weight.grad is not None
