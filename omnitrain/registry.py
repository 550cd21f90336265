"""One registry per model slot (an ``omnitrain.name_registry.Registry``).

A plugin registers a class under a slot and a name, with a config dataclass. The
registry stores that dataclass in Hydra's ConfigStore as ``<slot>/<name>`` so that
``position=rope1d`` selects it with no YAML, and every field is type-checked
(a mistyped key is an error, not a silently ignored value).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from omnitrain.name_registry import Registry, RegistryError
from omnitrain.slots import SLOTS, slot_spec

__all__ = ["PluginChoice", "PluginEntry", "RegistryError", "SlotRegistry", "build", "plugin_config",
           "register", "registry"]


@dataclass(frozen=True)
class PluginEntry:
    slot: str
    name: str
    cls: type
    config_cls: type
    description: str

    @property
    def origin(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"


class SlotRegistry(Registry[PluginEntry]):
    """The plugins of one slot (``omnitrain.name_registry.Registry`` of ``PluginEntry``)."""

    def __init__(self, slot: str) -> None:
        super().__init__(f"{slot} plugin")
        self.slot = slot

    def unknown(self, name: object) -> str:
        known = ", ".join(self.names()) or "(none)"
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        maybe = f" Did you mean '{hint[0]}'?" if hint else ""
        return (f"unknown {self.slot} plugin '{name}'.{maybe} Registered {self.slot} "
                f"plugins: {known}. A plugin of your own is loaded with "
                f"plugins=[my_package.my_module] or plugins=[path/to/file.py].")

    def entries(self) -> list[PluginEntry]:
        """Entries by name."""
        return [self.get(n) for n in self.names()]


REGISTRIES: dict[str, SlotRegistry] = {slot: SlotRegistry(slot) for slot in SLOTS}


def registry(slot: str) -> SlotRegistry:
    if slot not in REGISTRIES:
        raise RegistryError(f"unknown slot '{slot}'. Slots: {', '.join(SLOTS)}")
    return REGISTRIES[slot]


def _with_name_field(config_cls: type, name: str) -> type:
    """A copy of the plugin's config dataclass with ``name`` as its first field."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config for plugin '{name}' must be a dataclass, got {config_cls!r}")
    fields = dataclasses.fields(config_cls)
    if "name" in {f.name for f in fields}:
        raise TypeError(f"config {config_cls.__name__} must not define 'name'; the registry adds it")
    return dataclasses.make_dataclass(
        config_cls.__name__,
        [("name", str, dataclasses.field(default=name))] + [(f.name, f.type, f) for f in fields],
    )


def register(
    slot: str, name: str, config: type, description: str = ""
) -> Callable[[type], type]:
    """Class decorator: register ``cls`` as plugin ``name`` of ``slot``.

    ``config`` is a dataclass whose fields are the plugin's settings; the plugin is
    constructed as ``cls(config_instance, **slot_specific_kwargs)``.
    """

    def deco(cls: type) -> type:
        base = slot_spec(slot).base  # also refuses an unknown slot
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{slot} plugin '{name}' ({cls!r}) must subclass {base.__module__}.{base.__name__} "
                            f"(omnitrain.api.{base.__name__}): the core calls only that contract")
        doc_lines = (cls.__doc__ or "").strip().splitlines()
        text = description or (doc_lines[0] if doc_lines else "")
        entry = PluginEntry(slot, name, cls, config, text)
        registry(slot).add(name, entry, entry.origin)
        ConfigStore.instance().store(group=slot, name=name, node=_with_name_field(config, name))
        cls.plugin_name = name
        return cls

    return deco


class PluginChoice:
    """The plugin filling a slot: ``name`` and its validated ``config``, whose fields read
    through (``cfg.thinker.hidden_size``). It pickles as plain values and re-validates when
    first read, so data workers need only have loaded the plugin (a file plugin too)."""

    def __init__(self, slot: str, name: str, values: Mapping[str, Any], config: Any = None) -> None:
        self.slot, self.name, self._values, self._config = slot, name, dict(values), config

    @property
    def config(self) -> Any:
        if self._config is None:
            self._config = plugin_config(self.slot, {"name": self.name, **self._values})
        return self._config

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return getattr(self.config, key)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self._values}

    def __getstate__(self) -> dict:
        return {"slot": self.slot, "name": self.name, "values": self._values}

    def __setstate__(self, state: dict) -> None:
        self.slot, self.name, self._values, self._config = state["slot"], state["name"], state["values"], None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PluginChoice) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"PluginChoice({self.slot}={self.name}, {self._values})"


def plugin_config(slot: str, node: DictConfig | dict | PluginChoice) -> Any:
    """Validate a config node against its plugin's dataclass and return an instance."""
    if isinstance(node, PluginChoice):
        return node.config
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    if "name" not in data:
        raise RegistryError(f"config '{slot}' has no 'name': choose one of {registry(slot).names()}")
    entry = registry(slot).get(data.pop("name"))
    schema = OmegaConf.structured(entry.config_cls)
    try:
        merged = OmegaConf.merge(schema, data)
    except Exception as exc:  # omegaconf's message names the key; add the slot
        raise RegistryError(f"{slot}={entry.name}: {exc}") from exc
    return OmegaConf.to_object(merged)


def build(slot: str, node: DictConfig | dict | PluginChoice, **kwargs: Any) -> Any:
    """Construct the plugin named by ``node.name`` with its validated config."""
    cfg = plugin_config(slot, node)  # raises when 'name' is missing or unknown
    name = node.name if isinstance(node, PluginChoice) else node["name"]
    return registry(slot).get(name).cls(cfg, **kwargs)
