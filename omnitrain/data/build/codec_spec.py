"""``--codec SPEC`` of ``omnitrain data demo/pack/encode``: which codec makes the codes, as the
Hydra overrides that select it. Three forms:

* a folder holding ``codec.json`` whose ``"plugin"`` names a registered codec (what
  ``omnitrain export`` of a ``task=codec`` run writes; ``{"plugin": "exported", ...}`` for
  torch.export programs) -> ``codec=<plugin> codec.path=<the folder, absolute>``;
* ``NAME:PATH``, a registered codec and its checkpoint -> ``codec=NAME codec.path=<PATH, absolute>``;
* ``NAME``, a registered codec (``pitch``, ``pitch_groups``) -> ``codec=NAME``.

A registered name without a path separator is a name even where a folder of that name
exists (``./pitch`` is the folder). The overrides go before the command's own, so
``codec.groups=2`` given after them still applies.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from omnitrain.name_registry import RegistryError

CODEC_FILE = "codec.json"


def codec_overrides(spec: str, overrides: Sequence[str] = ()) -> list[str]:
    """The Hydra overrides selecting the codec of ``spec``. ``overrides``: the command's
    own, whose ``plugins=[...]`` (and recipe's plugins) are loaded first, so a codec from a
    plugin file is a registered name too. Raises ``RegistryError`` saying what to change."""
    _load_plugins(overrides)
    spec = str(spec).strip()
    if not spec:
        raise RegistryError(f"--codec is empty: {_forms()}")
    if _is_name(spec) and spec in _codecs():
        return [f"codec={spec}"]
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder(path)
    name, sep, rest = spec.partition(":")
    if sep and _is_name(name):
        _registered(name, spec)
        if not rest:
            raise RegistryError(f"--codec {spec}: no path after '{name}:' ({_forms()})")
        _takes_path(name, spec)
        return [f"codec={name}", f"codec.path={Path(rest).expanduser().resolve()}"]
    if _is_name(spec):
        _registered(spec, spec)
    raise RegistryError(f"--codec {spec}: no such folder ({path.resolve()}); {_forms()}")


def _folder(path: Path) -> list[str]:
    meta_path = path / CODEC_FILE
    if not meta_path.is_file():
        raise RegistryError(
            f"--codec {path}: the folder has no {CODEC_FILE}. A codec folder needs {CODEC_FILE} with "
            f"\"plugin\" naming a registered codec (e.g. {{\"plugin\": \"exported\", ...}} beside encode.pt2 "
            f"and decode.pt2); or give NAME:{path} for a codec that reads this folder as its path")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"--codec {path}: {meta_path} is not valid JSON ({exc})") from exc
    plugin = meta.get("plugin") if isinstance(meta, dict) else None
    if not isinstance(plugin, str) or not plugin:
        raise RegistryError(
            f"--codec {path}: {meta_path} has no \"plugin\" naming the codec that reads the folder; add "
            f"e.g. \"plugin\": \"exported\" (registered codecs: {', '.join(_codecs().names())}), or give "
            f"NAME:{path}")
    _registered(plugin, f"{path} ({meta_path} \"plugin\")")
    _takes_path(plugin, str(path))
    return [f"codec={plugin}", f"codec.path={path.resolve()}"]


def _forms() -> str:
    return ("give a registered codec NAME (" + ", ".join(_codecs().names()) + "), NAME:PATH, or a folder "
            f"with {CODEC_FILE} naming its \"plugin\"")


def _is_name(text: str) -> bool:
    return bool(text) and "/" not in text and "\\" not in text and not text.startswith(".")


def _codecs():
    from omnitrain.registry import registry

    return registry("codec")


def _registered(name: str, where: str) -> None:
    codecs = _codecs()
    if name not in codecs:
        raise RegistryError(f"--codec {where}: {codecs.unknown(name)}")


def _takes_path(name: str, where: str) -> None:
    """``codec.path=...`` is only valid for a codec whose config has a ``path``."""
    config = _codecs().get(name).config_cls
    if "path" not in {f.name for f in dataclasses.fields(config)}:
        raise RegistryError(f"--codec {where}: codec '{name}' reads no path (its settings: "
                            f"{[f.name for f in dataclasses.fields(config)]}); give --codec {name}")


def _load_plugins(overrides: Sequence[str]) -> None:
    """The installed plugins, and those ``overrides`` name (``plugins=[...]``, a recipe's)."""
    from hydra.errors import HydraException

    from omnitrain.config.compose import _plugins_named, recipe_files
    from omnitrain.plugin_loading import load_plugins

    try:
        named = _plugins_named(list(overrides), recipe_files())
    except HydraException:  # unparsable overrides: compose_config says what is wrong with them
        named = []
    load_plugins(named)
