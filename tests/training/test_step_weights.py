"""Losses weighted by the whole optimizer step: with gradient accumulation over
micro-batches of unequal sizes, a real Trainer (Lightning's own accumulation scaling
included) hands the optimizer the gradient of one batch holding all of the step's
samples, and logs that batch's losses. One process here; DDP and DeepSpeed ZeRO-2 on 2
processes in ``test_step_weights_ranks.py``."""

from __future__ import annotations

import torch

from omnitrain.data.collate import collate
from omnitrain.model.omni_model import OmniModel, next_token_targets
from omnitrain.model.speech_path import talker_inputs
from omnitrain.run_config import compose_config
from omnitrain.tokens import IGNORE_INDEX
from omnitrain.training.stages.stage_module import step_seed
from tests.helpers import smoke_overrides
from tests.training.step_weights_helpers import (
    mixed_examples,
    reference,
    relative_gap,
    slices,
    train_steps,
)

TOL = 1e-6


def test_accumulated_gradient_is_the_whole_steps(demo_dir, tmp_path):
    """accumulate 4 over an epoch of 6 micro-batches: a full step, the epoch's last step
    (2 micro-batches), and the next epoch's first step. Text and codec losses (the flow
    loss draws noise per batch; see the next test)."""
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "loss.flow=0"))
    pad = OmniModel(cfg).tokenizer.special_id("pad")
    groups = slices(mixed_examples(cfg, demo_dir, 19), [1, 4, 2, 5, 3, 4])
    batches = [collate(g, pad) for g in groups]
    assert batches[0].speech_rows.numel() == 0  # a micro-batch without speech
    capture = train_steps(cfg, batches, accumulate=4, steps=3)
    gaps, logged = [], []
    for k, step in enumerate([groups[0:4], groups[4:6], groups[0:4]]):
        want, losses = reference(cfg, capture.states[k], collate([e for g in step for e in g], pad))
        gaps.append(relative_gap(capture.grads[k], want))
        logged += [abs(capture.logged[k][n] / losses[n] - 1) for n in ("train/text", "train/codec", "train/loss")]
    print("relative gaps", gaps, "logged", max(logged))
    assert max(gaps) <= TOL, gaps
    assert max(logged) <= TOL, logged


def test_flow_loss_is_weighted_by_the_steps_frames(demo_dir, tmp_path):
    """With the flow loss on: the step's gradient is that of sum_i (n_i / N) x mean_i for
    each loss, every micro-batch's mean taken with the draws the Trainer made for it
    (reseeded from step and micro-batch), n_i its count, N the step's."""
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    model = OmniModel(cfg)
    pad = model.tokenizer.special_id("pad")
    batches = [collate(g, pad) for g in slices(mixed_examples(cfg, demo_dir, 12), [1, 4, 2, 5])]
    capture = train_steps(cfg, batches, accumulate=4, steps=1)

    def counts(b):
        speech = b.speech_rows.numel() > 0
        codec = talker_inputs(model.talker, b.codec_tokens, b.codec_mask)[2] if speech else None
        return {"text": (next_token_targets(b) != IGNORE_INDEX).sum(),
                "codec": (codec != IGNORE_INDEX).sum() if speech else 0,
                "flow": b.codec_mask.sum() * model.dit.mel_frames_per_code if speech else 0}

    model.load_state_dict(capture.states[0])
    n = [counts(b) for b in batches]
    total = {k: sum(c[k] for c in n) for k in n[0]}
    weights = {"text": cfg.loss.text, "codec": cfg.loss.codec, "flow": cfg.loss.flow}
    objective = 0.0
    for i, b in enumerate(batches):
        torch.manual_seed(step_seed(int(cfg.seed), 0, i, 0))
        losses = model(b)
        objective = objective + sum(w * losses[k] * n[i][k] / total[k] for k, w in weights.items())
    objective.backward()
    want = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    gap = relative_gap(capture.grads[0], want)
    print("relative gap", gap)
    assert any("dit" in name for name in capture.grads[0]) and gap <= TOL
    objective = float(objective.detach())
    assert abs(capture.logged[0]["train/loss"] - objective) <= TOL * objective


def test_named_losses_are_weighted_by_the_step(groups_demo_dir, tmp_path):
    """A stranger's plugins (``tests/contracts/stranger_plugins.py``): the Talker's own
    per-position loss weighs as the codec loss does, by the step's codec positions; each
    auxiliary loss, a mean over one forward, weighs every micro-batch of the step alike. So
    over a step's k micro-batches the optimizer gets the gradient of sum_i [text_i n_i/N +
    (codec_i + c codec_smooth_i) m_i/M + sum_a c_a aux_a,i / k], and the log has each aux's
    mean. Accumulating 4 over an epoch of 6: a full step, then the epoch's last (k = 2)."""
    from tests.contracts.test_stranger_plugins import NAMED, STRANGER

    demo_dir = groups_demo_dir  # 3 code groups per frame
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, *STRANGER))
    model = OmniModel(cfg)
    pad = model.tokenizer.special_id("pad")
    groups = slices(mixed_examples(cfg, demo_dir, 19), [1, 4, 2, 5, 3, 4])
    batches = [collate(g, pad) for g in groups]
    capture = train_steps(cfg, batches, accumulate=4, steps=2)
    aux = [name for name in NAMED if name != "codec_smooth"]

    def counts(b):
        speech = b.speech_rows.numel() > 0
        codec = talker_inputs(model.talker, b.codec_tokens, b.codec_mask)[2] if speech else None
        return {"text": (next_token_targets(b) != IGNORE_INDEX).sum(),
                "codec": (codec != IGNORE_INDEX).sum() if speech else 0}

    gaps, logged = [], []
    for k, step in enumerate([batches[0:4], batches[4:6]]):
        model.load_state_dict(capture.states[k])
        model.zero_grad()
        n = [counts(b) for b in step]
        total = {name: sum(c[name] for c in n) for name in n[0]}
        objective, means = 0.0, dict.fromkeys(aux, 0.0)
        for i, b in enumerate(step):
            losses = model(b)
            objective = objective + losses["text"] * n[i]["text"] / total["text"]
            codec = losses["codec"] + NAMED["codec_smooth"] * losses["codec_smooth"]
            objective = objective + codec * n[i]["codec"] / max(int(total["codec"]), 1)
            for name in aux:
                objective = objective + NAMED[name] * losses[name] / len(step)
                means[name] += float(losses[name].detach()) / len(step)
        objective.backward()
        want = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        gaps.append(relative_gap(capture.grads[k], want))
        logged += [abs(capture.logged[k][f"train/{name}"] / means[name] - 1) for name in aux]
    print("relative gaps", gaps, "logged", max(logged))
    assert max(gaps) <= TOL and max(logged) <= TOL, (gaps, logged)
