"""The README's scale-out section names only strategies, recipes and scripts that exist."""

from __future__ import annotations

import re
from pathlib import Path

from omnitrain.config.compose import recipe_files

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_named_strategies_exist():
    names = set(re.findall(r"strategy=(\w+)", README)) | set(re.findall(r"\| `(\w+)` \|", README))
    from omnitrain.parallel import registered_strategies

    strategies = {p.stem for p in (ROOT / "configs" / "strategy").glob("*.yaml")} | set(registered_strategies())
    named = {n for n in names if n.startswith(("ddp", "fsdp", "deepspeed"))}
    assert named and named <= strategies, named - strategies
    assert {"ddp", "fsdp", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3",
            "deepspeed_zero3_offload"} <= named


def test_named_recipes_and_scripts_exist():
    for recipe in re.findall(r"recipe=(\w+)(?![\w/.])", README):  # names, not recipe=path/to/file.yaml
        assert recipe in recipe_files(), recipe
    for recipe in re.findall(r"(?:\.sh|\.sbatch) (\w+)", README):
        assert recipe in recipe_files(), recipe
    for script in re.findall(r"scripts/launch/[\w.]+", README):
        assert (ROOT / script).exists(), script


def test_memory_the_readme_quotes_for_a_recipe_is_its_headers():
    """The README once said 26.5 GiB for omni7b_lora while the recipe's header (which
    tests/training/performance/test_plan.py holds to `omnitrain plan`) said 26.7."""
    quoted = re.findall(r"`recipe=(\w+)`[^`]*?the plan says ([\d.]+) GiB", README)
    assert quoted, "the README no longer quotes a recipe's plan: drop this test"
    for recipe, gib in quoted:
        header = recipe_files()[recipe].read_text()
        expected = re.search(r"expected:\s+about ([\d.]+) GiB", header)
        assert expected and expected.group(1) == gib, (recipe, gib, expected and expected.group(1))
