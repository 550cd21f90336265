"""Compose the run config with Hydra: config groups, recipes, plugins, overrides.

``omnitrain train recipe=demo position=rope1d trainer.max_steps=10`` composes
``configs/train.yaml``, the plugin configs the registry stored in Hydra's ConfigStore,
the recipe (``recipes/demo.yaml``, a ``_global_`` override file) and the overrides.
Plugins a run needs (from ``plugins=[...]`` or a recipe's ``plugins:``) are imported
*before* composing, so their config groups exist.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from omnitrain.config.explain import explain
from omnitrain.config.overrides import hydra_problems, recipe_file_overrides
from omnitrain.config.schema import register_schemas
from omnitrain.config.sizes import register_sizes, report_unsized
from omnitrain.config.validate import ConfigError, validate
from omnitrain.config.yaml_cache import load_yaml
from omnitrain.plugin_loading import load_plugins

RECIPE_PATH_ENV = "OMNITRAIN_RECIPE_PATH"  # extra recipe folders, os.pathsep-separated


def config_dir() -> Path:
    return Path(str(files("omnitrain_configs")))


def recipe_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(RECIPE_PATH_ENV, "").split(os.pathsep) if p]
    return [Path(str(files("omnitrain_recipes"))), *extra]


def recipe_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in recipe_dirs():
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


_STORED_RECIPES: dict[str, tuple[Path, bytes]] = {}  # what ConfigStore holds as recipe/<name>


def _register_recipes(recipes: dict[str, Path]) -> None:
    """Store each recipe as ``recipe/<name>``; one unchanged since it was stored is skipped
    (every compose calls this)."""
    store = ConfigStore.instance()
    for name, path in recipes.items():
        stamp = (Path(path), Path(path).read_bytes())
        if _STORED_RECIPES.get(name) != stamp:
            store.store(group="recipe", name=name, node=load_yaml(path), package="_global_")
            _STORED_RECIPES[name] = stamp


def _plugins_named(overrides: list[str], recipes: dict[str, Path]) -> list[str]:
    """Plugin specs from ``plugins=[...]`` overrides and from the chosen recipe file."""
    specs: list[str] = []
    parsed = OverridesParser.create().parse_overrides(overrides)
    for ov in parsed:
        key = ov.key_or_group
        if key == "plugins" or key.lstrip("+") == "plugins":
            value = ov.value()
            specs += [str(v) for v in (value if isinstance(value, list) else [value])]
        if key == "recipe":
            path = recipes.get(str(ov.value()))
            if path is not None:
                specs += [str(p) for p in (load_yaml(path).get("plugins") or [])]
    return specs


# values that are paths or URLs: brace patterns, spaces and colons (``pipe:cat {a,b}.tar``)
# are Hydra syntax, so an unquoted value is quoted for the user
VERBATIM_KEYS = ("data.train_shards", "data.val_shards", "data.index")


def quote_verbatim(override: str) -> str:
    """``data.train_shards=pipe:cat x-{0..3}.tar`` -> ``data.train_shards='pipe:cat x-{0..3}.tar'``."""
    key, sep, value = override.partition("=")
    if not sep or key.lstrip("+~") not in VERBATIM_KEYS or not value or value[0] in "'\"[":
        return override
    for quote in ("'", '"'):
        if quote not in value:
            return f"{key}={quote}{value}{quote}"
    return override


def compose_run(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    """The composed config, validated against every schema (keys, types, plugins).
    Raises ``ConfigError`` with a message that says what to change. Callers use
    ``omnitrain.run_config.compose_config``: the typed config, with every owner's checks."""
    overrides = [quote_verbatim(o) for o in overrides]
    refused = hydra_problems(overrides)
    if refused:
        raise ConfigError("invalid overrides:\n  - " + "\n  - ".join(refused))
    named = recipe_files()
    try:
        overrides, files = recipe_file_overrides(overrides, named)  # recipe=path/to/file.yaml
        recipes = {**named, **files}
        load_plugins(_plugins_named(overrides, recipes))
    except HydraException as exc:
        raise ConfigError(f"cannot parse overrides {overrides}: {exc}") from exc
    _register_recipes(recipes)
    register_schemas()
    try:
        register_sizes(config_dir())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"configs/size: {exc}") from exc
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except HydraException as exc:
        raise ConfigError(explain(str(exc), named)) from exc
    choices = cfg.hydra.runtime.choices
    size, model = choices.get("size"), choices.get("model")
    # a plain config: it pickles into data workers (the typed plugin nodes do not), and
    # every value is checked against its schema by ``validate``
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    cfg.pop("hydra")
    cfg.model = None if model in (None, "null") else model  # for the record: which release
    if size is not None:  # the rows already sit in the slots; keep the name, not the table
        cfg.size = size
        report_unsized(config_dir(), size, cfg)
    load_plugins(list(cfg.get("plugins") or []))
    validate(cfg)
    return cfg
