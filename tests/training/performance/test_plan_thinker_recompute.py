"""``thinker.activation_checkpointing`` (per-block recomputation under any strategy) is
counted by ``omnitrain plan``: the Thinker's activations shrink, the other slots' do not."""

from __future__ import annotations

from omnitrain.run_config import compose_config
from omnitrain.training.performance.plan import make_plan

NO_SHARDS = "data.train_shards=/nonexistent/plan-from-the-budget.tar"


def test_thinker_recompute_shrinks_the_planned_activations():
    base = ["recipe=omni05b_full", NO_SHARDS]
    plain = make_plan(compose_config(base), gpus=1)
    ckpt = make_plan(compose_config([*base, "thinker.activation_checkpointing=true"]), gpus=1)
    assert ckpt.activations < plain.activations - 2**32  # 30.5 -> 25.8 GiB at this recipe
    assert ckpt.activations > plain.activations_recomputed  # only the Thinker recomputes
