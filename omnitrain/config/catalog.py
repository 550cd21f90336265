"""What a user may choose on the command line, read off the files and the registry:
recipes with their one-line description, config groups with their options. The
``--help`` texts and the "did you mean" hints use it, so they never go stale."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from omnitrain.plugin_loading import load_plugins

# ConfigStore groups that are plumbing, not choices: section schemas, size rows, recipes
# (listed on their own), Hydra's own
_INTERNAL = ("schema", "recipe", "hydra")


def recipe_description(path: Path) -> str:
    """The first sentence of the recipe's header comment (after ``# @package``)."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text.startswith("#") or (words and not text.lstrip("#").strip()):
            break  # the header paragraph ends at code or at an empty comment line
        text = text.lstrip("#").strip()
        if text and not text.startswith("@package"):
            words.append(text)
    paragraph = " ".join(words)
    end = paragraph.find(". ")
    return paragraph[: end + 1] if end >= 0 else paragraph


def recipe_summaries(recipes: dict[str, Path]) -> list[tuple[str, str]]:
    """(name, one-line description) of every recipe, sorted by name."""
    return [(name, recipe_description(path)) for name, path in sorted(recipes.items())]


def group_options(config_dir: Path, plugins: list[str] | tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every config group and its options: ``configs/<group>/*.yaml`` and what plugins and
    strategies registered in Hydra's ConfigStore (after loading the installed plugins)."""
    load_plugins(list(plugins))
    groups: dict[str, set[str]] = {}
    for folder in sorted(p for p in config_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        options = {p.stem for p in folder.glob("*.yaml")}
        if options:
            groups.setdefault(folder.name, set()).update(options)
    for group, node in ConfigStore.instance().repo.items():
        if not isinstance(node, dict) or group in _INTERNAL or group.startswith("size_"):
            continue
        groups.setdefault(group, set()).update(name.removesuffix(".yaml") for name in node)
    return {group: sorted(options) for group, options in sorted(groups.items())}
