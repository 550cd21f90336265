"""Rewrite the ``expected:`` memory line of every omni recipe from ``omnitrain plan``.

Run after changing a recipe, a size or the memory model; tests/training/performance/test_plan.py
fails while a header disagrees with the plan. The numbers assume no shards are read
(every slot at the token budget's positions), so they do not depend on local data.

    python scripts/update_recipe_headers.py
"""

from __future__ import annotations

import re
from pathlib import Path

from omnitrain.run_config import compose_config
from omnitrain.training.performance.plan import GiB, chosen, layout, make_plan, per_gpu_total

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
NO_SHARDS = "data.train_shards=/nonexistent/plan-from-the-budget.tar"
LINE = re.compile(r"^#   expected: .*$", re.M)


def expected_line(recipe: str) -> str:
    cfg = compose_config([f"recipe={recipe}", NO_SHARDS])
    per_node, nodes = layout(cfg)
    plan = make_plan(cfg, per_node * nodes, per_node)
    row = chosen(cfg)
    act = plan.activations_recomputed if plan.recompute else plan.activations
    return (f"#   expected:      about {per_gpu_total(plan, row) / GiB:.1f} GiB per GPU on {plan.gpus} GPUs "
            f"({row}: {plan.states[row] / GiB:.1f} model states + {act / GiB:.1f} activations, "
            "every slot at the token budget)")


def main() -> None:
    for path in sorted([*RECIPES.glob("omni*.yaml"), *RECIPES.glob("qwen3_omni*.yaml")]):
        text = path.read_text()
        new = LINE.sub(expected_line(path.stem), text, count=1)
        if new != text:
            path.write_text(new)
            print(f"updated {path.name}")


if __name__ == "__main__":
    main()
