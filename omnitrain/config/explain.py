"""Hydra's composition errors, said in omnitrain's words: the key or option that is
wrong, the closest known one ("did you mean"), and what to run to see them all."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Iterable

from omnitrain.config.schema import SCALAR_KEYS, SECTION_SCHEMAS
from omnitrain.config.suggest import suggest

RECIPE_HELP = "or give a file: recipe=path/to/my_recipe.yaml (more named recipes: $OMNITRAIN_RECIPE_PATH)"


def explain(message: str, recipes: Iterable[str]) -> str:
    """A Hydra ``compose`` error message rewritten to name the culprit and a suggestion."""
    first = message.splitlines()[0] if message else message
    missing = re.search(r"Could not find '([\w-]+)/([^']*)'", message)
    if missing:
        group, option = missing.groups()
        if group == "recipe":
            names = sorted(recipes)
            return (f"unknown recipe '{option}'{suggest(option, names)}. Recipes: {', '.join(names)}; "
                    f"{RECIPE_HELP}.")
        options = re.findall(r"^\t(\S+)$", message.split("Available options", 1)[-1], re.M)
        listed = f". Available options in '{group}': {', '.join(options)}" if options else ""
        return (f"unknown {group} '{option}'{suggest(option, options)}{listed} (`omnitrain list` describes "
                f"plugins, `omnitrain train --help` lists every group)\n({first})")
    override = re.search(r"Could not override '([\w.]+)'", message)
    if override:
        key = override.group(1)
        section, _, leaf = key.rpartition(".")
        known = known_keys(section)
        if leaf in known:  # a real key the chosen config files leave unset (Lightning's many arguments)
            return (f"'{key}' is not set in the chosen config files, so Hydra wants it added: "
                    f"+{key}=... (with the '+')\n({first})")
        hint = suggest(leaf, known, f"{section}." if section else "")
        return (f"unknown key '{key}'{hint}: check its spelling (`omnitrain config` prints the full config, "
                f"`omnitrain train --help` the groups)\n({first})")
    if "Ambiguous value for argument" in message:
        return f"{message}\nomnitrain: to run each value, sweep with `omnitrain train -m key=a,b ...`"
    return message


def top_level_keys() -> list[str]:
    from omnitrain.registry import SLOTS

    return sorted({*SLOTS, *SECTION_SCHEMAS, *SCALAR_KEYS, "trainer", "strategy", "size", "model", "recipe"})


def _field_type(field: dataclasses.Field) -> type | None:
    sub = field.type if isinstance(field.type, type) else None
    if sub is None and field.default_factory is not dataclasses.MISSING:
        sub = type(field.default_factory())
    return sub if sub is not None and dataclasses.is_dataclass(sub) else None


def known_keys(section: str) -> list[str]:
    """The keys a config section (``""`` for the top level, ``data``, ``data.loader``,
    ``thinker``, ``strategy``, ``trainer``) may hold, for a 'did you mean'."""
    from hydra.core.config_store import ConfigStore

    from omnitrain.registry import SLOTS, registry

    if not section:
        return top_level_keys()
    head, *rest = section.split(".")
    if head in SECTION_SCHEMAS:
        schema: type | None = SECTION_SCHEMAS[head]
        for part in rest:
            fields = {f.name: f for f in dataclasses.fields(schema)}
            schema = _field_type(fields[part]) if part in fields else None
            if schema is None:
                return []
        return [f.name for f in dataclasses.fields(schema)]
    if rest:
        return []
    if head == "trainer":
        from lightning.pytorch import Trainer

        return list(inspect.signature(Trainer.__init__).parameters)
    if head in SLOTS:  # any plugin of the slot: the chosen one is not known when composing fails
        return sorted({f.name for e in registry(head).entries() for f in dataclasses.fields(e.config_cls)})
    if head == "strategy":  # the options of every registered strategy
        nodes = ConfigStore.instance().repo.get("strategy", {})
        return sorted({str(k) for n in nodes.values() for k in n.node} - {"name"})
    return []
