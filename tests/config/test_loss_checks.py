"""The run's named losses are one Registry: a name two slots declare, a core loss's name,
and a ``loss.weights`` key nobody declares are each refused with what to change."""

from __future__ import annotations

from omnitrain.config.loss_checks import declared_losses, loss_weight_problems

DECLARED = {"thinker": {"balance": 0.01}, "talker": {"codec": 1.0, "codec_smooth": 0.1},
            "audio_encoder": {"audio_spread": 0.05}}


def test_declared_losses_are_registered_by_the_slot_that_declares_them():
    losses, problems = declared_losses(DECLARED)
    assert problems == [] and losses.names() == ["audio_spread", "balance", "codec_smooth"]
    assert losses.get("balance") == 0.01  # the default coefficient


def test_two_slots_declaring_one_name_and_a_core_name_are_refused():
    _, problems = declared_losses({**DECLARED, "dit": {"balance": 0.5, "flow": 1.0}})
    assert problems == [
        "named loss 'balance' is registered twice: by thinker and by dit. Rename one of them. (in named_losses())",
        "dit declares a loss named 'flow', which the core computes itself: rename it in dit's named_losses()"]


def test_a_weight_nobody_declares_names_the_closest_and_the_declared_ones():
    problems = loss_weight_problems(DECLARED, {"balanse": 2.0, "text": 1.0, "balance": -1})
    assert problems == [
        "loss.weights.balanse: no plugin of this run returns it: unknown named loss 'balanse' (did you mean "
        "'balance'?); registered: ['audio_spread', 'balance', 'codec_smooth'] (declared by the run's plugins "
        "in named_losses())",
        "loss.weights.text: the core's losses are weighted by loss.text",
        "loss.weights.balance=-1: a coefficient is a number >= 0"]
