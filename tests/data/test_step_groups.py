"""The training loader's step grouping (``group_steps``) and the per-batch counts it sums
(``Batch.loss_counts``), on real batches collated from the demo shards."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from omnitrain.data.collate import collate
from omnitrain.data.step_groups import group_steps
from omnitrain.model.flow_matching import flow_matching_loss
from omnitrain.model.omni_model import OmniModel, next_token_targets
from omnitrain.model.speech_path import speech_condition, talker_inputs
from omnitrain.tokens import IGNORE_INDEX
from tests.training.step_weights_helpers import mixed_examples, slices


@pytest.fixture(scope="module")
def batches(demo_dir, tmp_path_factory):
    from omnitrain.run_config import compose_config
    from tests.helpers import smoke_overrides

    cfg = compose_config(smoke_overrides(demo_dir, tmp_path_factory.mktemp("run")))
    model = OmniModel(cfg)
    pad = model.tokenizer.special_id("pad")
    groups = slices(mixed_examples(cfg, demo_dir, 30), [1, 3, 2, 4, 1, 5, 2, 3, 4, 5])
    out = [collate(g, pad) for g in groups]
    out.append(collate(groups[-1], pad, pack_length=512))  # packed: several samples per row
    return model, out


def test_steps_follow_lightnings_rule(batches):
    """A step ends after every ``accumulate``-th batch of the epoch and at its end; the
    epoch's batch index restarts with every pass; each batch gets its step's sums."""
    _, stream = batches
    stream = stream[:10]
    got = list(group_steps(stream, 4, len(stream)))
    assert [b.keys for b in got] == [b.keys for b in stream]
    assert [b.step_totals["micro_batches"] for b in got] == [4] * 8 + [2] * 2
    for start, stop in ((0, 4), (4, 8), (8, 10)):
        want = {k: sum(b.loss_counts()[k] for b in stream[start:stop]) for k in ("text", "codec", "flow")}
        for b in got[start:stop]:
            assert {k: b.step_totals[k] for k in want} == want
    assert len({got[0].step_totals["text"], got[4].step_totals["text"], got[8].step_totals["text"]}) == 3
    # an epoch of 6 ends with a step of 2; a stream that ends early (a resumed epoch) too
    assert [b.step_totals["micro_batches"] for b in group_steps(stream[:6], 4, 6)] == [4] * 4 + [2] * 2
    assert [b.step_totals["micro_batches"] for b in group_steps(stream[:5], 4, 10)] == [4] * 4 + [1]
    assert [b.step_totals["micro_batches"] for b in group_steps(stream, 4, 6)][:6] == [4] * 4 + [2] * 2
    assert all(b.step_totals is None for b in stream)  # the loader's batches are not edited


def test_counts_are_what_the_losses_count(batches):
    """text: next-token targets; codec: the Talker's targets (codes + eos); flow: the
    DiT's mel frames, the flow loss's own denominator; from host sizes, and the same
    counted from the tensors."""
    model, stream = batches
    k = model.dit.mel_frames_per_code
    assert any(b.speech_rows.numel() == 0 for b in stream) and any(b.speech_rows.numel() > 1 for b in stream)
    for batch in stream:
        counts = batch.loss_counts()
        _, _, codec_targets = talker_inputs(model.talker, batch.codec_tokens, batch.codec_mask)
        speech = batch.speech_rows.numel() > 0
        assert counts == {
            "text": int((next_token_targets(batch) != IGNORE_INDEX).sum()),
            "codec": int((codec_targets != IGNORE_INDEX).sum()) if speech else 0,
            "flow": int(batch.codec_mask.sum()) * k if speech else 0,
        }
        assert replace(batch, target_index=None, sizes=None).loss_counts() == counts
        if not speech:
            continue
        cond = speech_condition(batch, model.speech_cfg.n_mels)
        args = (model.dit, batch.speech_mel, batch.codec_tokens, batch.codec_mask, 0.1, cond, 0.2)
        torch.manual_seed(3)
        mean = flow_matching_loss(*args)
        torch.manual_seed(3)
        summed = flow_matching_loss(*args, frames=1.0) / counts["flow"]
        assert torch.allclose(mean, summed, rtol=3e-7, atol=0)  # measured 6.1e-8 (one float32 ulp)
